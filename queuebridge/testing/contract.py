"""The backend contract suite.

Subclass :class:`BackendContract` in a test module and provide two fixtures:

``make_backend``
    A factory ``make_backend(**settings) -> Backend`` building a backend connected
    to a real broker (every call: a new instance on the *same* broker). Keyword
    arguments override :class:`~queuebridge.backend.BackendSettings` fields
    (``timeout``, ``lease_timeout`` ...). The fixture closes what it built.

``unreachable_backend``
    A backend whose broker cannot be reached (a closed port, a stopped server),
    built with ``timeout=0.5`` and ``connect_timeout=0.5``.

Optionally override :meth:`BackendContract.inject_malformed` to put a message the
adapter cannot decode on a queue.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from queuebridge.backend import Backend, Delivery
from queuebridge.envelope import Envelope
from queuebridge.errors import BackendError, BackendUnavailable, LeaseLost

__all__ = ["BackendContract", "MakeBackend"]

MakeBackend = Callable[..., Backend]
WAIT = 10.0
"""Upper bound, in seconds, on any wait in this suite."""


def _job(queue: str, *, task: str = "tests.echo", delay: float | None = None,
         args: tuple[Any, ...] = (1, "two")) -> Envelope:
    return Envelope.create(task, args, {"k": [1, 2]}, queue=queue, delay=delay,
                           headers={"trace": "abc"}, max_retries=2)


def _reserve(backend: Backend, queue: str, wait: float = WAIT) -> Delivery:
    delivery = backend.reserve([queue], timeout=wait)
    assert delivery is not None, f"nothing reserved from {queue!r} within {wait}s"
    return delivery


class BackendContract:
    """Behaviour every backend must have. Runs against a real broker."""

    @pytest.fixture
    def queue(self) -> str:
        """A queue name no other test uses."""
        return f"qb-contract-{uuid.uuid4().hex[:12]}"

    @pytest.fixture
    def backend(self, make_backend: MakeBackend) -> Backend:
        """A backend with short lease and operation timeouts."""
        return make_backend(lease_timeout=1.0)

    def inject_malformed(self, backend: Backend, queue: str) -> None:
        """Put an undecodable message on ``queue``. Override to enable that test."""
        pytest.skip(f"{type(backend).__name__} offers no way to inject a raw message")

    # -- round trip -----------------------------------------------------------------

    def test_round_trip_keeps_every_field(self, backend: Backend, queue: str) -> None:
        sent = _job(queue)
        backend.send(sent)
        delivery = _reserve(backend, queue)
        assert delivery.envelope == sent
        assert delivery.backend == backend.name
        assert delivery.queue == queue
        backend.ack(delivery)
        assert backend.reserve([queue], timeout=0.2) is None
        assert backend.depth(queue) == 0

    def test_depth_counts_waiting_jobs(self, backend: Backend, queue: str) -> None:
        assert backend.depth(queue) == 0
        for _ in range(3):
            backend.send(_job(queue))
        assert backend.depth(queue) == 3

    def test_reserve_honours_queue_order(self, backend: Backend, queue: str) -> None:
        low, high = f"{queue}-low", f"{queue}-high"
        backend.send(_job(low))
        first = _job(high)
        backend.send(first)
        delivery = backend.reserve([high, low], timeout=WAIT)
        assert delivery is not None
        assert delivery.envelope is not None
        assert delivery.envelope.id == first.id
        backend.ack(delivery)
        backend.ack(_reserve(backend, low))

    def test_reserve_returns_none_when_empty_within_timeout(
        self, backend: Backend, queue: str
    ) -> None:
        start = time.monotonic()
        assert backend.reserve([queue], timeout=0.3) is None
        assert time.monotonic() - start < 0.3 + backend.settings.timeout + 1.0

    # -- batches --------------------------------------------------------------------

    def test_send_many_delivers_the_whole_batch(self, backend: Backend, queue: str) -> None:
        batch = [_job(queue, args=(i,)) for i in range(50)]
        backend.send_many(batch)
        assert backend.depth(queue) == 50
        seen = set()
        for _ in batch:
            delivery = _reserve(backend, queue)
            assert delivery.envelope is not None
            seen.add(delivery.envelope.id)
            backend.ack(delivery)
        assert seen == {env.id for env in batch}

    def test_reserve_many_leases_a_batch_exclusively(
        self, make_backend: MakeBackend, queue: str
    ) -> None:
        backend, other = make_backend(), make_backend()
        batch = [_job(queue, args=(i,)) for i in range(30)]
        backend.send_many(batch)
        first = backend.reserve_many([queue], 20, timeout=WAIT)
        assert 1 <= len(first) <= 20
        rest: list[Delivery] = []
        deadline = time.monotonic() + WAIT
        # Both consumers keep leasing: a prefetching broker may hold the rest for either.
        while len(first) + len(rest) < 30 and time.monotonic() < deadline:
            rest.extend(other.reserve_many([queue], 20, timeout=0.2))
            first.extend(backend.reserve_many([queue], 20, timeout=0.2))
        ids = [d.envelope.id for d in first + rest if d.envelope is not None]
        assert sorted(ids) == sorted(env.id for env in batch), "a job was lost or leased twice"
        for delivery in first:
            backend.ack(delivery)
        for delivery in rest:
            other.ack(delivery)
        assert backend.reserve_many([queue], 5, timeout=0.2) == []

    def test_ack_many_acks_a_batch(self, make_backend: MakeBackend, queue: str) -> None:
        backend = make_backend(lease_timeout=0.5)
        backend.send_many([_job(queue, args=(i,)) for i in range(12)])
        leased: list[Delivery] = []
        deadline = time.monotonic() + WAIT
        while len(leased) < 12 and time.monotonic() < deadline:
            leased.extend(backend.reserve_many([queue], 12 - len(leased), timeout=0.2))
        assert len(leased) == 12
        backend.ack_many([])
        backend.ack(leased[0])
        # A stale delivery (acked already) in the batch: LeaseLost, the rest acked anyway.
        with pytest.raises(LeaseLost):
            backend.ack_many(leased)
        assert backend.depth(queue) == 0
        time.sleep(0.6)  # past lease_timeout: a lease the batch left behind is recovered
        backend.recover()
        assert backend.reserve_many([queue], 12, timeout=0.3) == [], "an acked job came back"
        assert backend.depth(queue) == 0

    def test_send_many_of_nothing_is_a_no_op(self, backend: Backend, queue: str) -> None:
        backend.send_many([])
        assert backend.depth(queue) == 0

    # -- leases ---------------------------------------------------------------------

    def test_a_lease_is_exclusive(self, make_backend: MakeBackend, queue: str) -> None:
        jobs = [_job(queue, args=(i,)) for i in range(20)]
        make_backend().send_many(jobs)
        seen: list[str] = []
        lock = threading.Lock()

        def consume(backend: Backend) -> None:
            while (delivery := backend.reserve([queue], timeout=0.5)) is not None:
                assert delivery.envelope is not None
                with lock:
                    seen.append(delivery.envelope.id)
                backend.ack(delivery)

        threads = [threading.Thread(target=consume, args=(make_backend(),)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT * 2)
        assert sorted(seen) == sorted(env.id for env in jobs)

    def test_unacked_lease_is_recovered(self, make_backend: MakeBackend, queue: str) -> None:
        crashed = make_backend(lease_timeout=0.5)
        survivor = make_backend(lease_timeout=0.5)
        sent = _job(queue)
        crashed.send(sent)
        leased = _reserve(crashed, queue)
        assert survivor.reserve([queue], timeout=0.2) is None, "a leased job was handed out twice"
        # The crashed consumer never acks nor touches; the survivor recovers it.
        deadline = time.monotonic() + WAIT
        recovered = 0
        while recovered == 0 and time.monotonic() < deadline:
            recovered = survivor.recover() + crashed.recover()
            if recovered == 0:
                time.sleep(0.1)
        again = _reserve(survivor, queue)
        assert again.envelope is not None
        assert again.envelope.id == sent.id
        survivor.ack(again)
        del leased

    def test_touched_lease_is_not_recovered(self, make_backend: MakeBackend, queue: str) -> None:
        backend = make_backend(lease_timeout=1.0)
        backend.send(_job(queue))
        delivery = _reserve(backend, queue)
        for _ in range(4):
            time.sleep(0.4)
            backend.touch([delivery])
            backend.recover()
        assert backend.reserve([queue], timeout=0.2) is None
        backend.ack(delivery)

    # -- retries, delays, dead letters ------------------------------------------------

    def test_retry_with_delay(self, backend: Backend, queue: str) -> None:
        backend.send(_job(queue))
        first = _reserve(backend, queue)
        assert first.envelope is not None
        backend.retry(first, first.envelope.next_attempt(delay=1.0))
        assert backend.reserve([queue], timeout=0.3) is None, "a delayed retry ran early"
        second = _reserve(backend, queue, wait=WAIT)
        assert second.envelope is not None
        assert second.envelope.id == first.envelope.id
        assert second.envelope.attempt == 2
        backend.ack(second)

    def test_delayed_send_waits_until_due(self, backend: Backend, queue: str) -> None:
        sent = _job(queue, delay=1.0)
        backend.send(sent)
        assert backend.reserve([queue], timeout=0.3) is None, "a delayed job ran early"
        delivery = _reserve(backend, queue)
        assert delivery.envelope is not None
        assert delivery.envelope.id == sent.id
        assert time.time() >= (sent.not_before or 0) - 0.05
        backend.ack(delivery)

    def test_dead_letter_keeps_the_reason(self, backend: Backend, queue: str) -> None:
        sent = _job(queue)
        backend.send(sent)
        backend.dead_letter(_reserve(backend, queue), "poison: ValueError('x')")
        assert backend.reserve([queue], timeout=0.2) is None
        assert backend.depth(queue) == 0
        dead = backend.dead_letters(queue)
        assert [(d.envelope.id if d.envelope else None, r) for d, r in dead] == [
            (sent.id, "poison: ValueError('x')")
        ]

    def test_malformed_message_is_delivered_with_its_problem(
        self, backend: Backend, queue: str
    ) -> None:
        self.inject_malformed(backend, queue)
        delivery = _reserve(backend, queue)
        assert delivery.envelope is None
        assert delivery.problem
        backend.dead_letter(delivery, f"malformed: {delivery.problem}")
        assert len(backend.dead_letters(queue)) == 1

    # -- health -----------------------------------------------------------------------

    def test_ping_reports_latency(self, backend: Backend) -> None:
        latency = backend.ping()
        assert 0 <= latency < backend.settings.timeout

    def test_unreachable_broker_fails_fast(self, unreachable_backend: Backend,
                                           queue: str) -> None:
        limit = unreachable_backend.settings.timeout + unreachable_backend.settings.connect_timeout
        operations: list[Callable[[], object]] = [
            unreachable_backend.ping,
            lambda: unreachable_backend.send(_job(queue)),
            lambda: unreachable_backend.send_many([_job(queue), _job(queue)]),
            lambda: unreachable_backend.depth(queue),
            lambda: unreachable_backend.reserve([queue], timeout=0.1),
        ]
        for operation in operations:
            start = time.monotonic()
            with pytest.raises(BackendUnavailable):
                operation()
            assert time.monotonic() - start < limit + 1.0

    def test_closed_backend_refuses_work(self, make_backend: MakeBackend, queue: str) -> None:
        backend = make_backend()
        backend.close()
        backend.close()
        with pytest.raises(BackendError):
            backend.send(_job(queue))
