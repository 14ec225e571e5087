"""AMQP leases at their edges: a dropped connection voids them at once, a failed
re-delay gives them back at once."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence

import pytest
from queuebridge_kombu.amqp import AMQPBackend
from queuebridge_kombu.publisher import Outgoing

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


def test_a_failed_re_delay_gives_the_early_job_back_at_once(
        queue: str, amqp_backends: list[Backend], monkeypatch: pytest.MonkeyPatch) -> None:
    backend = _make(amqp_backends)
    assert isinstance(backend, AMQPBackend)
    sent = Envelope.create("t", queue=queue, delay=0.45)  # 200 ms bucket: released early
    backend.send(sent)
    publish = backend._publisher.publish
    failed: list[str] = []

    def fail_the_first_re_delay(messages: Sequence[Outgoing], operation: str = "send") -> None:
        if operation == "reserve" and not failed:
            failed.append(operation)
            raise BackendUnavailable("publisher link lost", backend=backend.name)
        publish(messages, operation)

    monkeypatch.setattr(backend._publisher, "publish", fail_the_first_re_delay)
    with pytest.raises(BackendUnavailable):
        backend.reserve_many([queue], 10, timeout=5)
    assert failed and backend._consumer.leases == {}, "the early job stayed leased"

    # Back in its queue now, not after lease_timeout: leased again when due.
    leased = backend.reserve_many([queue], 10, timeout=3)
    assert [d.job_id for d in leased] == [sent.id]
    assert sent.not_before is not None and time.time() >= sent.not_before
    backend.ack(leased[0])
