"""The worker against memory backends: running, acking, retrying, dead-lettering."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from _worker_helpers import FAST, burst, dead, leased, memory, memory_bridge, running

from queuebridge.bridge import Bridge
from queuebridge.context import JobContext, NoJobContext, current_job
from queuebridge.envelope import Envelope
from queuebridge.errors import ConfigError
from queuebridge.registry import JobOptions
from queuebridge.worker import Worker, WorkerOptions
from tests.helpers import wait_until


@pytest.fixture
def bridge() -> Iterator[Bridge]:
    bridge = memory_bridge(2)
    yield bridge
    bridge.close()


def test_runs_jobs_from_every_backend_and_acks(bridge: Bridge) -> None:
    seen: list[int] = []

    @bridge.task(name="t.add")
    def add(n: int) -> None:
        seen.append(n)

    for name, base in (("b0", 0), ("b1", 100)):
        memory(bridge, name).send_many([add.job((base + i,)) for i in range(5)])

    worker = burst(bridge)

    assert sorted(seen) == [0, 1, 2, 3, 4, 100, 101, 102, 103, 104]
    assert worker.stats.succeeded == worker.stats.processed == 10
    for name in ("b0", "b1"):
        assert memory(bridge, name).depth("default") == 0
        assert leased(memory(bridge, name)) == 0


def test_retry_then_success_counts_attempts_and_waits_backoff(bridge: Bridge) -> None:
    attempts: list[tuple[int, float]] = []

    @bridge.task(name="t.flaky", retries=3)
    def flaky() -> None:
        attempts.append((current_job().attempt, time.time()))
        if len(attempts) < 3:
            raise RuntimeError("not yet")

    flaky.retry_backoff, flaky.retry_backoff_max = 0.1, 0.2
    memory(bridge, "b1").send(flaky.job())

    worker = burst(bridge)

    assert [attempt for attempt, _ in attempts] == [1, 2, 3]
    # Equal jitter: the first delay is at least half the base (0.05 s).
    assert attempts[1][1] - attempts[0][1] >= 0.05
    stats = worker.stats
    assert (stats.failed, stats.retried, stats.succeeded) == (2, 2, 1)


def test_out_of_retries_dead_letters_with_traceback(bridge: Bridge) -> None:
    @bridge.task(name="t.boom", retries=1)
    def boom() -> None:
        raise ValueError("boom")

    memory(bridge, "b1").send(boom.job())

    worker = burst(bridge)

    reasons = dead(memory(bridge, "b0")) + dead(memory(bridge, "b1"))
    assert len(reasons) == 1
    assert reasons[0].startswith("ValueError: boom (attempt 2 of 2)")
    assert "Traceback" in reasons[0] and "in boom" in reasons[0]
    assert worker.stats.dead_lettered == 1 and worker.stats.retried == 1


def test_unknown_task_and_malformed_message_are_dead_lettered(bridge: Bridge) -> None:
    ran: list[str] = []

    @bridge.task(name="t.ok")
    def ok() -> None:
        ran.append("ok")

    b0 = memory(bridge, "b0")
    b0.put_raw("default", b'{"v": 1, "id": "x"')
    b0.send(Envelope.create("os.system", ("rm -rf /",)))
    b0.send(ok.job())

    worker = burst(bridge)

    reasons = sorted(dead(b0))
    assert reasons[0].startswith("malformed message: ")
    assert reasons[1] == "unknown task 'os.system'"
    assert ran == ["ok"]
    assert worker.stats.dead_lettered == 2


def test_broken_backend_mid_run_is_logged_once_and_resumes(
        bridge: Bridge, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="queuebridge.worker")
    ran: list[str] = []

    @bridge.task(name="t.mark")
    def mark(tag: str) -> None:
        ran.append(tag)

    b0, b1 = memory(bridge, "b0"), memory(bridge, "b1")
    with running(bridge):
        b1.send(mark.job(("before",)))
        wait_until(lambda: "before" in ran)
        b1.break_()
        calls = b1.calls
        wait_until(lambda: b1.calls >= calls + 5, message="several failed polls")
        b0.send(mark.job(("meanwhile",)))
        wait_until(lambda: "meanwhile" in ran)
        b1.heal()
        b1.send(mark.job(("after",)))
        wait_until(lambda: "after" in ran)

    messages = [r.getMessage() for r in caplog.records]
    assert sum("'b1' unavailable" in m for m in messages) == 1
    assert sum("'b1' is back" in m for m in messages) == 1


def test_burst_skips_a_backend_down_at_start(
        bridge: Bridge, caplog: pytest.LogCaptureFixture) -> None:
    ran: list[int] = []

    @bridge.task(name="t.n")
    def n(i: int) -> None:
        ran.append(i)

    memory(bridge, "b0").send(n.job((1,)))
    memory(bridge, "b1").break_()

    burst(bridge)

    assert ran == [1]
    assert any("unreachable at start" in r.getMessage() for r in caplog.records)


def test_graceful_stop_finishes_in_flight_job(bridge: Bridge) -> None:
    started, release = threading.Event(), threading.Event()
    done: list[str] = []

    @bridge.task(name="t.slow")
    def slow() -> None:
        started.set()
        release.wait(5)
        done.append("slow")

    b0 = memory(bridge, "b0")
    b0.send(slow.job())
    with running(bridge) as handle:
        assert started.wait(5)
        handle.worker.stop()
        release.set()
    assert done == ["slow"]
    assert handle.worker.stats.succeeded == 1
    assert leased(b0) == 0 and b0.depth("default") == 0


def test_stop_past_grace_period_hands_the_lease_back(bridge: Bridge) -> None:
    started, release = threading.Event(), threading.Event()

    @bridge.task(name="t.stuck")
    def stuck() -> None:
        started.set()
        release.wait(5)

    b0 = memory(bridge, "b0")
    b0.send(stuck.job())
    try:
        with running(bridge, grace_period=0.05) as handle:
            assert started.wait(5)
            handle.worker.stop(graceful=False)
        assert handle.worker.stats.returned == 1
        assert b0.depth("default") == 1 and leased(b0) == 0
    finally:
        release.set()


def test_bounded_prefetch_never_leases_more_than_concurrency(bridge: Bridge) -> None:
    b0 = memory(bridge, "b0")
    seen: list[int] = []
    release = threading.Event()

    @bridge.task(name="t.hold")
    def hold() -> None:
        seen.append(leased(b0))
        release.wait(0.02)

    b0.send_many([hold.job() for _ in range(12)])
    burst(bridge, concurrency=3)
    assert len(seen) == 12
    assert max(seen) <= 3


def test_job_context_inside_and_outside_a_job(bridge: Bridge) -> None:
    contexts: list[JobContext] = []

    @bridge.task(name="t.ctx", retries=2, timeout=30)
    def ctx() -> None:
        contexts.append(current_job())

    env = ctx.job(options=JobOptions(job_id="job-1"))
    memory(bridge, "b1").send(env)
    burst(bridge)

    (got,) = contexts
    assert (got.job_id, got.attempt, got.max_retries, got.backend, got.queue, got.task) == (
        "job-1", 1, 2, "b1", "default", "t.ctx")
    assert got.deadline is not None and not got.expired and got.retries_left == 2
    with pytest.raises(NoJobContext, match="outside a running job"):
        current_job()


def test_soft_timeout_is_visible_and_a_late_return_fails(bridge: Bridge) -> None:
    flags: list[bool] = []

    @bridge.task(name="t.late", timeout=0.05)
    def late() -> None:
        wait_until(lambda: current_job().expired, timeout=2)
        flags.append(current_job().expired)

    @bridge.task(name="t.polite", timeout=0.05)
    def polite() -> None:
        wait_until(lambda: current_job().expired, timeout=2)
        current_job().check_timeout()

    b0 = memory(bridge, "b0")
    b0.send_many([late.job(), polite.job()])
    worker = burst(bridge)

    assert flags == [True]
    reasons = dead(b0)
    assert len(reasons) == 2
    assert all(reason.startswith("JobTimeout: ") for reason in reasons)
    assert worker.stats.failed == 2


def test_job_handed_out_early_is_requeued_until_due(bridge: Bridge) -> None:
    ran_at: list[float] = []

    @bridge.task(name="t.later")
    def later() -> None:
        ran_at.append(time.time())

    env = later.job(options=JobOptions(delay=0.2))
    # A broker without delayed support hands the job out at once.
    memory(bridge, "b0").put_raw("default", env.encode())

    worker = burst(bridge)

    assert env.not_before is not None and ran_at and ran_at[0] >= env.not_before
    assert worker.stats.returned >= 1


def test_sigterm_on_main_thread_stops_gracefully(bridge: Bridge) -> None:
    import os
    import signal

    done: list[str] = []

    @bridge.task(name="t.term")
    def term() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        done.append("term")

    memory(bridge, "b0").send(term.job())
    previous = signal.getsignal(signal.SIGTERM)
    assert Worker(bridge, WorkerOptions(**FAST)).run() == 0
    assert done == ["term"]
    assert signal.getsignal(signal.SIGTERM) is previous


def test_invalid_options_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"worker\.concurrency"):
        WorkerOptions(concurrency=0)
    with pytest.raises(ConfigError, match=r"worker\.pool"):
        WorkerOptions(pool="fibers")
