"""The worker with its state database: dedup, checkpoints and heartbeats."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from _worker_helpers import burst, dead, leased, memory, memory_bridge, running

from queuebridge.bridge import Bridge
from queuebridge.context import current_job
from queuebridge.heartbeat import list_workers
from queuebridge.registry import JobOptions
from tests.helpers import wait_until


@pytest.fixture
def bridge() -> Iterator[Bridge]:
    bridge = memory_bridge(2)
    yield bridge
    bridge.close()


def test_job_sent_to_both_backends_runs_once(bridge: Bridge, tmp_path: Path) -> None:
    ran: list[str] = []
    duplicates: list[str] = []

    class Spy:
        from queuebridge.hookspecs import hookimpl

        @hookimpl
        def queuebridge_job_duplicate(self, envelope: object, backend: str) -> None:
            duplicates.append(backend)

    bridge.plugins.register(Spy())

    @bridge.task(name="t.once")
    def once() -> None:
        ran.append(current_job().backend)

    env = once.job(options=JobOptions(job_id="same-id"))
    memory(bridge, "b0").send(env)
    memory(bridge, "b1").send(env)

    worker = burst(bridge, state=tmp_path / "state.sqlite3")

    assert len(ran) == 1
    assert worker.stats.duplicates == 1 and duplicates != []
    for name in ("b0", "b1"):
        assert leased(memory(bridge, name)) == 0


def test_retries_are_new_attempts_not_duplicates(bridge: Bridge, tmp_path: Path) -> None:
    attempts: list[int] = []

    @bridge.task(name="t.twice", retries=1)
    def twice() -> None:
        attempts.append(current_job().attempt)
        if len(attempts) == 1:
            raise RuntimeError("first")

    memory(bridge, "b0").send(twice.job())
    worker = burst(bridge, state=tmp_path / "state.sqlite3")
    assert attempts == [1, 2]
    assert worker.stats.duplicates == 0 and worker.stats.succeeded == 1


def test_checkpoint_resumes_on_retry_and_is_cleared(bridge: Bridge, tmp_path: Path) -> None:
    starts: list[int] = []

    @bridge.task(name="t.resume", retries=1)
    def resume() -> None:
        job = current_job()
        start = (job.last_checkpoint() or {"row": 0})["row"]
        starts.append(start)
        for row in range(start, 10):
            job.checkpoint({"row": row})
            if row == 4 and job.attempt == 1:
                raise RuntimeError("crash at row 4")

    env = resume.job(options=JobOptions(job_id="resume-1"))
    memory(bridge, "b0").send(env)
    path = tmp_path / "state.sqlite3"
    burst(bridge, state=path)

    assert starts == [0, 4]
    from queuebridge.checkpoint import SQLiteCheckpoints
    assert SQLiteCheckpoints(path).load("resume-1") is None


def test_unreachable_store_runs_the_job_anyway(
        bridge: Bridge, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    ran: list[int] = []

    @bridge.task(name="t.anyway")
    def anyway(i: int) -> None:
        ran.append(i)

    memory(bridge, "b0").send_many([anyway.job((i,)) for i in range(3)])
    burst(bridge, state=blocker / "state.sqlite3")

    assert sorted(ran) == [0, 1, 2]
    assert sum("dedup store unavailable" in r.getMessage() for r in caplog.records) == 1
    assert dead(memory(bridge, "b0")) == []


def test_heartbeat_lists_the_running_worker_and_its_job(
        bridge: Bridge, tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    started, release = threading.Event(), threading.Event()

    @bridge.task(name="t.beat")
    def beat() -> None:
        started.set()
        release.wait(5)

    memory(bridge, "b0").send(beat.job(options=JobOptions(job_id="beating")))
    try:
        with running(bridge, state=path, heartbeat_interval=0.02, name="w-test"):
            assert started.wait(5)
            wait_until(lambda: any(w.current_jobs == ("beating",) for w in list_workers(path)))
            (info,) = list_workers(path)
            assert info.name == "w-test" and info.alive and info.backends == ("b0", "b1")
            release.set()
    finally:
        release.set()
    assert list_workers(path) == []  # a clean exit unregisters


def test_claim_held_by_a_dead_worker_is_taken_over_after_it_expires(
        bridge: Bridge, tmp_path: Path) -> None:
    from queuebridge.dedup import Claim, SQLiteDedupStore

    path = tmp_path / "state.sqlite3"
    ran: list[str] = []

    @bridge.task(name="t.orphan")
    def orphan() -> None:
        ran.append(current_job().job_id)

    env = orphan.job(options=JobOptions(job_id="orphan-1"))
    assert SQLiteDedupStore(path).claim("orphan-1", 1, "dead-worker", lease=0.2) is Claim.CLAIMED
    memory(bridge, "b0").send(env)

    worker = burst(bridge, state=path)

    assert ran == ["orphan-1"]
    assert worker.stats.returned >= 1  # handed back while the dead claim was live
