"""RabbitMQ refusing, resetting or blackholing traffic: fail fast, then heal by itself."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from queuebridge.backend import Backend, Delivery
from queuebridge.drill.faultproxy import FaultProxy
from queuebridge.envelope import Envelope
from queuebridge.errors import BackendUnavailable, LeaseLost
from queuebridge.testing.plugin import free_port
from tests.kombu.amqp_helpers import amqp_backend

pytestmark = [pytest.mark.usefixtures("rabbitmq"), pytest.mark.slow]

TIMEOUT = 1.0
SLACK = 1.0


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    proxy = FaultProxy("127.0.0.1", 5672)
    yield proxy
    proxy.close()


@pytest.fixture
def queue() -> str:
    return f"qb-kombu-fault-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def backends(amqp_backends: list[Backend]) -> list[Backend]:
    return amqp_backends


def _fails_fast(operation: Callable[[], object]) -> float:
    start = time.monotonic()
    with pytest.raises(BackendUnavailable):
        operation()
    elapsed = time.monotonic() - start
    assert elapsed < TIMEOUT + TIMEOUT + SLACK, f"took {elapsed:.2f}s"
    return elapsed


@pytest.mark.parametrize("mode", ["refuse", "reset", "blackhole"])
def test_fault_fails_fast_then_heals(proxy: FaultProxy, queue: str, mode: str,
                                     backends: list[Backend]) -> None:
    backend = amqp_backend(f"amqp://guest:guest@127.0.0.1:{proxy.port}//",
                           timeout=TIMEOUT, connect_timeout=TIMEOUT)
    backends.append(backend)
    backend.send(Envelope.create("t", queue=queue))
    assert backend.reserve([queue], timeout=5) is not None  # consumer connected too

    proxy.set_mode(mode)
    _fails_fast(lambda: backend.send(Envelope.create("t", queue=queue)))
    _fails_fast(backend.ping)
    _fails_fast(lambda: backend.reserve([queue], timeout=0.1))

    proxy.heal()
    # The same object reconnects by itself on its next call.
    backend.send(Envelope.create("t", (1,), queue=queue))
    assert backend.ping() < TIMEOUT
    delivery = backend.reserve([queue], timeout=5)
    assert delivery is not None
    backend.ack(delivery)


def test_multi_host_url_fails_over_to_the_alternate(queue: str,
                                                    backends: list[Backend]) -> None:
    url = (f"amqp://guest:guest@127.0.0.1:{free_port()}//;"
           "amqp://guest:guest@127.0.0.1:5672//")
    backend = amqp_backend(url, timeout=TIMEOUT, connect_timeout=TIMEOUT)
    backends.append(backend)
    sent = Envelope.create("t", queue=queue)
    backend.send(sent)
    delivery = backend.reserve([queue], timeout=5)
    assert delivery is not None and delivery.envelope == sent
    backend.ack(delivery)


def test_quorum_queues_round_trip(queue: str, backends: list[Backend]) -> None:
    backend = amqp_backend(options={"quorum": True})
    backends.append(backend)
    sent = Envelope.create("t", queue=queue)
    backend.send_many([sent, Envelope.create("t", queue=queue)])
    assert backend.depth(queue) == 2
    delivery = backend.reserve([queue], timeout=5)
    assert delivery is not None and delivery.envelope == sent
    backend.dead_letter(delivery, "poison")
    assert [reason for _, reason in backend.dead_letters(queue)] == ["poison"]


def test_ack_after_reconnect_is_lease_lost(queue: str, backends: list[Backend],
                                           proxy: FaultProxy) -> None:
    backend = amqp_backend(f"amqp://guest:guest@127.0.0.1:{proxy.port}//",
                           timeout=TIMEOUT, connect_timeout=TIMEOUT)
    backends.append(backend)
    backend.send(Envelope.create("t", queue=queue))
    delivery = backend.reserve([queue], timeout=5)
    assert delivery is not None
    proxy.set_mode("reset")
    proxy.heal()
    again = _reserve_through_outage(backend, queue)
    assert again.redelivered, "RabbitMQ redelivers what the dead connection held"
    with pytest.raises(LeaseLost):
        backend.ack(delivery)  # its delivery tag died with the old connection
    backend.ack(again)


def _reserve_through_outage(backend: Backend, queue: str) -> Delivery:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            delivery = backend.reserve([queue], timeout=1)
        except BackendUnavailable:
            continue  # the first call finds the dead link and drops it
        if delivery is not None:
            return delivery
    raise AssertionError("the job was not redelivered")
