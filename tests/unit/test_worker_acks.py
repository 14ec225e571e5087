"""Batched acks: the acker's group commit, failures, and stop / burst never leaving an ack
behind."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest
from _worker_helpers import burst, leased, running

from queuebridge.backend import BackendSettings, Delivery
from queuebridge.backends.memory import MemoryBackend
from queuebridge.bridge import Bridge
from queuebridge.envelope import Envelope
from queuebridge.errors import BackendUnavailable
from queuebridge.worker.acks import Acker
from queuebridge.worker.tracking import Job
from tests.helpers import wait_until


class Recording(MemoryBackend):
    """Records every ``ack_many`` batch; ``gate`` holds calls, ``fail`` makes the next
    ``fail`` calls raise ``BackendUnavailable`` (after acking nothing), ``delay`` slows
    every call."""

    def __init__(self, settings: BackendSettings) -> None:
        super().__init__(settings)
        self.batches: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail = 0
        self.delay = 0.0

    def _ack_many(self, deliveries: Sequence[Delivery]) -> None:
        self.batches.append(len(deliveries))
        self.gate.wait(5)
        time.sleep(self.delay)
        if self.fail:
            self.fail -= 1
            raise BackendUnavailable("ack_many failed: injected", backend=self.name)
        super()._ack_many(deliveries)


def recording(**settings: Any) -> Recording:
    return Recording(BackendSettings(name="rec", type="memory", timeout=0.5, **settings))


@pytest.fixture
def backend() -> Iterator[Recording]:
    backend = recording()
    yield backend
    backend.close()


def lease(backend: Recording, count: int) -> list[Job]:
    backend.send_many([Envelope.create("t.noop", (i,)) for i in range(count)])
    deliveries = backend.reserve_many(["default"], count, timeout=1)
    assert len(deliveries) == count
    return [Job(delivery, backend, cast(Any, None)) for delivery in deliveries]


def test_acks_finished_while_one_batch_is_in_flight_form_the_next(backend: Recording) -> None:
    finished: list[Job] = []
    acker = Acker(backend, finished.append)
    acker.start()
    first, *rest = lease(backend, 6)
    backend.gate.clear()
    acker.submit(first)
    wait_until(lambda: backend.batches == [1], message="the first ack sent at once")
    for job in rest:
        acker.submit(job)
    backend.gate.set()
    acker.close(2.0)
    assert backend.batches == [1, 5]
    assert finished == [first, *rest]
    assert leased(backend) == 0 and backend.depth("default") == 0


def test_failed_acks_still_free_their_jobs_and_leave_the_leases(
    backend: Recording, caplog: pytest.LogCaptureFixture
) -> None:
    finished: list[Job] = []
    acker = Acker(backend, finished.append)
    acker.start()
    jobs = lease(backend, 3)
    backend.fail = 1
    for job in jobs:
        acker.submit(job)
    acker.close(2.0)
    assert len(finished) == 3, "a failed ack must not keep its pool slot"
    assert leased(backend) >= 1, "un-acked leases stay, for recover"
    assert "acks failed" in caplog.text


def test_an_ack_after_close_is_made_at_once(backend: Recording) -> None:
    finished: list[Job] = []
    acker = Acker(backend, finished.append)
    acker.start()
    acker.close(1.0)
    [job] = lease(backend, 1)
    acker.submit(job)  # a pool thread finishing after the worker stopped
    assert finished == [job] and leased(backend) == 0


def test_without_batch_acks_the_pool_thread_acks_at_once() -> None:
    class Looping(Recording):
        capabilities = replace(Recording.capabilities, batch_ack=False)

    backend = Looping(BackendSettings(name="loop", type="memory"))
    finished: list[Job] = []
    acker = Acker(backend, finished.append)
    acker.start()
    [job] = lease(backend, 1)
    acker.submit(job)
    assert finished == [job] and leased(backend) == 0
    assert not acker.thread.is_alive(), "no acker thread for a backend that loops"
    acker.close(1.0)
    backend.close()


def test_a_lost_lease_in_a_batch_is_logged(backend: Recording,
                                           caplog: pytest.LogCaptureFixture) -> None:
    finished: list[Job] = []
    acker = Acker(backend, finished.append)
    jobs = lease(backend, 3)
    backend.ack(jobs[1].delivery)
    for job in jobs:
        acker.submit(job)
    with caplog.at_level(logging.WARNING):
        acker.start()
        acker.close(2.0)
    assert len(finished) == 3 and leased(backend) == 0
    assert "1 of 3 deliveries no longer leased" in caplog.text


def test_burst_waits_for_slow_acks(backend: Recording) -> None:
    bridge = Bridge([backend])
    ran: list[int] = []
    task = bridge.task(name="t.noop")(ran.append)
    backend.send_many([task.job((i,)) for i in range(40)])
    backend.delay = 0.05
    worker = burst(bridge, concurrency=4)
    assert sorted(ran) == list(range(40))
    assert worker.stats.succeeded == 40
    assert leased(backend) == 0 and backend.depth("default") == 0
    assert len(backend.batches) < 40, "acks were not batched"


def test_graceful_stop_acks_before_returning(backend: Recording) -> None:
    bridge = Bridge([backend])
    task = bridge.task(name="t.noop")(lambda: None)
    with running(bridge) as handle:
        backend.gate.clear()
        backend.send(task.job())
        wait_until(lambda: backend.batches, message="the ack started")
        handle.worker.stop()
        handle.thread.join(timeout=0.2)  # it must NOT finish while the ack is held
        assert handle.thread.is_alive(), "stopped with an ack in flight"
        backend.gate.set()
    assert leased(backend) == 0


def test_a_job_whose_ack_failed_is_recovered_and_acked_as_a_duplicate(
    tmp_path: Path
) -> None:
    backend = recording(lease_timeout=0.3)
    bridge = Bridge([backend])
    ran: list[str] = []
    task = bridge.task(name="t.once")(lambda: ran.append("ran"))
    backend.fail = 1
    backend.send(task.job())
    try:
        with running(bridge, state=tmp_path / "state.sqlite3") as handle:
            wait_until(lambda: handle.worker.stats.duplicates == 1, timeout=5,
                       message="the recovered job acked as a duplicate")
        assert ran == ["ran"], "a job whose ack failed ran again"
        assert leased(backend) == 0 and backend.depth("default") == 0
    finally:
        bridge.close()

