"""AMQP leases at their edges: a dropped connection voids them at once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from queuebridge.backend import Backend
from queuebridge.drill.faultproxy import FaultProxy
from queuebridge.envelope import Envelope
from queuebridge.errors import BackendUnavailable, LeaseLost
from tests.kombu.amqp_helpers import amqp_backend

pytestmark = pytest.mark.usefixtures("rabbitmq")

TIMEOUT = 1.0


@pytest.fixture
def queue() -> str:
    return f"qb-kombu-lease-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def proxy(amqp_backends: list[Backend]) -> Iterator[FaultProxy]:
    proxy = FaultProxy("127.0.0.1", 5672)
    yield proxy
    proxy.close()


def _make(backends: list[Backend], url: str | None = None, **overrides: object) -> Backend:
    backend = amqp_backend(url, **overrides) if url else amqp_backend(**overrides)
    backends.append(backend)
    return backend


@pytest.mark.slow
def test_settling_after_the_link_dropped_is_lease_lost(
        proxy: FaultProxy, queue: str, amqp_backends: list[Backend]) -> None:
    backend = _make(amqp_backends, f"amqp://guest:guest@127.0.0.1:{proxy.port}//",
                    timeout=TIMEOUT, connect_timeout=TIMEOUT)
    backend.send(Envelope.create("t", queue=queue))
    delivery = backend.reserve([queue], timeout=5)
    assert delivery is not None and delivery.envelope is not None
    proxy.set_mode("reset")
    with pytest.raises(BackendUnavailable):
        backend.reserve([queue], timeout=0.1)  # finds the dead link and drops it
    proxy.heal()

    # Not reconnected yet: the old lease is still remembered, but void.
    with pytest.raises(LeaseLost):
        backend.ack(delivery)
    with pytest.raises(LeaseLost):
        backend.retry(delivery, delivery.envelope.next_attempt())
    with pytest.raises(LeaseLost):
        backend.dead_letter(delivery, "poison")

    # RabbitMQ redelivered the one job; no retry copy and no dead letter were made.
    other = _make(amqp_backends)
    again = other.reserve_many([queue], 10, timeout=5)
    assert [d.job_id for d in again] == [delivery.job_id] and again[0].redelivered
    other.ack(again[0])
    assert other.reserve([queue], timeout=0.3) is None
    assert other.dead_letters(queue) == []
