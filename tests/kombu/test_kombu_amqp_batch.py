"""AMQP batch leasing: queue order, the prefetch window, acks from pool threads, the
idle probe, early deliveries from delay buckets."""

from __future__ import annotations

import queue as queue_module
import threading
import time
import uuid
from collections.abc import Callable

import pytest
from queuebridge_kombu.amqp import AMQPBackend

from queuebridge.backend import Backend, Delivery
from queuebridge.envelope import Envelope
from tests.kombu.amqp_helpers import amqp_backend

pytestmark = pytest.mark.usefixtures("rabbitmq")

MakeAMQP = Callable[..., AMQPBackend]


@pytest.fixture
def make(amqp_backends: list[Backend]) -> MakeAMQP:
    def build(**overrides: object) -> AMQPBackend:
        backend = amqp_backend(**overrides)
        assert isinstance(backend, AMQPBackend)
        amqp_backends.append(backend)
        return backend

    return build


def _queue(tag: str = "batch") -> str:
    return f"qb-kombu-{tag}-{uuid.uuid4().hex[:10]}"


def _jobs(queue: str, count: int, **options: float) -> list[Envelope]:
    return [Envelope.create("t", (i,), queue=queue, **options) for i in range(count)]


def _lease_all(backend: Backend, queues: list[str], limit: int, expected: int,
               wait: float = 5.0) -> list[Delivery]:
    leased: list[Delivery] = []
    deadline = time.monotonic() + wait
    while len(leased) < expected and time.monotonic() < deadline:
        leased += backend.reserve_many(queues, limit, timeout=0.5)
    return leased


def test_a_batch_follows_the_queue_order(make: MakeAMQP) -> None:
    backend = make()
    high, low = _queue("high"), _queue("low")
    backend.send_many(_jobs(low, 10) + _jobs(high, 3))
    leased = _lease_all(backend, [high, low], 12, expected=13)
    assert [d.queue for d in leased[:3]] == [high] * 3
    assert all(d.queue == low for d in leased[3:])
    for delivery in leased:
        backend.ack(delivery)


def test_the_window_bounds_the_leases_and_widens_to_twice_the_batch(make: MakeAMQP) -> None:
    backend = make(options={"prefetch": 2})
    queue = _queue()
    backend.send_many(_jobs(queue, 30))
    held = _lease_all(backend, [queue], 4, expected=30, wait=2.0)
    assert backend.prefetch_window == 8
    assert len(held) == 8, "unacked deliveries exceeded the prefetch window"
    rest = 0
    deadline = time.monotonic() + 5
    while rest < 22 and time.monotonic() < deadline:
        for delivery in held:
            backend.ack(delivery)
        held = backend.reserve_many([queue], 4, timeout=0.5)
        rest += len(held)
    assert rest == 22


def test_a_window_widened_after_subscribing_applies_to_the_consumer(make: MakeAMQP) -> None:
    backend = make(options={"prefetch": 2})
    queue = _queue()
    backend.send_many(_jobs(queue, 30))
    first = _lease_all(backend, [queue], 1, expected=1)  # subscribed with a window of 2
    held = first + _lease_all(backend, [queue], 10, expected=20, wait=3.0)
    assert backend.prefetch_window == 20
    # Plus at most what the old window (2) had delivered before the widening.
    assert 20 <= len(held) <= 22, "the consumer kept the window it subscribed with"
    for delivery in held:
        backend.ack(delivery)


def test_acks_from_pool_threads_while_the_consumer_waits(make: MakeAMQP) -> None:
    backend = make()
    queue, empty = _queue(), _queue("empty")
    sent = _jobs(queue, 200)
    backend.send_many(sent)
    work: queue_module.Queue[Delivery | None] = queue_module.Queue()

    def pool() -> None:
        while (delivery := work.get()) is not None:
            backend.ack(delivery)

    threads = [threading.Thread(target=pool) for _ in range(8)]
    for thread in threads:
        thread.start()
    seen: list[str] = []
    deadline = time.monotonic() + 10
    while len(seen) < len(sent) and time.monotonic() < deadline:
        for delivery in backend.reserve_many([queue], 16, timeout=0.5):
            seen.append(delivery.job_id)
            work.put(delivery)
    # The consumer thread now holds the link waiting on an empty queue while the
    # pool's last acks are queued: they must still reach RabbitMQ.
    assert backend.reserve_many([empty], 16, timeout=0.3) == []
    for _ in threads:
        work.put(None)
    for thread in threads:
        thread.join(5)
    assert sorted(seen) == sorted(env.id for env in sent)
    backend.close()
    assert make().reserve([queue], timeout=0.5) is None, "an acked job was redelivered"


def test_no_idle_probe_while_deliveries_flow(make: MakeAMQP) -> None:
    backend = make(timeout=0.2)
    queue = _queue()
    backend.send_many(_jobs(queue, 8))
    deadline = time.monotonic() + 5
    leased = 0
    while leased < 8 and time.monotonic() < deadline:
        leased += len(backend.reserve_many([queue], 1, timeout=1.0))
        time.sleep(0.1)  # slower than the timeout: only the prefetch buffer is read
    assert leased == 8
    assert backend.idle_probes == 0
    assert backend.reserve_many([queue], 4, timeout=0.6) == []
    assert backend.idle_probes >= 1, "an idle consumer must check the broker"


def test_early_deliveries_in_a_batch_are_delayed_again(make: MakeAMQP) -> None:
    backend = make()
    queue = _queue()
    due = _jobs(queue, 3)
    later = _jobs(queue, 2, delay=0.4)
    backend.send_many(due + later)
    start = time.time()
    leased = _lease_all(backend, [queue], 10, expected=5)
    assert [d.job_id for d in leased[:3]] == [env.id for env in due]
    assert {d.job_id for d in leased[3:]} == {env.id for env in later}
    for delivery in leased[3:]:
        assert delivery.envelope is not None and delivery.envelope.not_before is not None
        assert time.time() >= delivery.envelope.not_before - 0.01 > start
    for delivery in leased:
        backend.ack(delivery)


def test_ack_many_while_the_consumer_waits_reaches_the_broker(make: MakeAMQP) -> None:
    backend = make()
    queue, empty = _queue(), _queue("empty")
    backend.send_many(_jobs(queue, 20))
    leased = _lease_all(backend, [queue], 20, expected=20)
    waiting = threading.Thread(target=backend.reserve_many, args=([empty], 4, 0.5))
    waiting.start()
    time.sleep(0.1)  # the consumer thread now holds the link, waiting for deliveries
    backend.ack_many(leased)
    waiting.join(5)
    backend.close()
    assert make().reserve([queue], timeout=0.5) is None, "an acked job was redelivered"
