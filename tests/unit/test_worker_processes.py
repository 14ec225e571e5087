"""pool="processes": tasks run in spawned children; hard timeouts kill and replace them."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from queuebridge.bridge import Bridge
from queuebridge.errors import ConfigError
from queuebridge.worker import Worker, WorkerOptions
from tests.unit._worker_helpers import FAST, burst, dead, memory, memory_bridge

APP = '''
import os
from pathlib import Path

from queuebridge.context import current_job
from queuebridge.backend import BackendSettings
from queuebridge.backends.memory import MemoryBackend
from queuebridge.bridge import Bridge

bridge = Bridge([MemoryBackend(BackendSettings(name="b0", type="memory"))])
OUT = Path(os.environ["QB_TEST_OUT"])


@bridge.task(name="t.mark")
def mark(name: str) -> dict[str, int]:
    (OUT / name).write_text(str(os.getpid()))
    return {"pid": os.getpid()}


@bridge.task(name="t.hang", timeout=0.5)
def hang() -> None:
    import time
    time.sleep(60)


@bridge.task(name="t.crash_once", retries=1)
def crash_once(name: str) -> None:
    if current_job().attempt == 1:
        os._exit(3)
    (OUT / name).write_text("second attempt")


@bridge.task(name="t.fails")
def fails() -> None:
    raise ValueError("nope")


@bridge.task(name="t.resume", retries=1)
def resume(name: str) -> None:
    job = current_job()
    if job.last_checkpoint() is None:
        job.checkpoint({"step": 1})
        raise RuntimeError("crash after the checkpoint")
    (OUT / name).write_text(str(job.last_checkpoint()))
'''


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Bridge:
    package = tmp_path / "apps"
    package.mkdir()
    (package / "qb_proc_app.py").write_text(textwrap.dedent(APP))
    (tmp_path / "out").mkdir()
    monkeypatch.setenv("QB_TEST_OUT", str(tmp_path / "out"))
    monkeypatch.syspath_prepend(str(package))
    module = __import__("qb_proc_app")
    yield module.bridge
    sys.modules.pop("qb_proc_app", None)


def run_burst(bridge: Bridge, tmp_path: Path, **options: object) -> Worker:
    merged = {"pool": "processes", "app": "qb_proc_app:bridge", "concurrency": 2,
              "state": tmp_path / "state.sqlite3", **options}
    return burst(bridge, **merged)


def test_processes_pool_needs_the_app() -> None:
    with pytest.raises(ConfigError, match="module:attr"):
        Worker(memory_bridge(1), WorkerOptions(**{**FAST, "pool": "processes"}))


def test_tasks_run_in_children_and_failures_come_back(app: Bridge, tmp_path: Path) -> None:
    backend = memory(app, "b0")
    tasks = app.registry
    backend.send_many([tasks.get("t.mark").job(("a",)), tasks.get("t.fails").job()])
    worker = run_burst(app, tmp_path)
    out = tmp_path / "out"
    assert int((out / "a").read_text()) != __import__("os").getpid()
    assert worker.stats.succeeded == 1 and worker.stats.dead_lettered == 1
    (reason,) = dead(backend)
    assert reason.startswith("ValueError: nope (attempt 1 of 1)")
    assert 'raise ValueError("nope")' in reason


def test_hard_timeout_kills_the_child_and_the_next_job_still_runs(
        app: Bridge, tmp_path: Path) -> None:
    backend = memory(app, "b0")
    backend.send_many([app.registry.get("t.hang").job(), app.registry.get("t.mark").job(("b",))])
    worker = run_burst(app, tmp_path, concurrency=1)
    (reason,) = dead(backend)
    assert "hard timeout after 0.5 s" in reason
    assert (tmp_path / "out" / "b").exists()
    assert worker.stats.failed == 1


def test_a_child_that_dies_is_replaced_and_the_job_retried(app: Bridge, tmp_path: Path) -> None:
    memory(app, "b0").send(app.registry.get("t.crash_once").job(("c",)))
    worker = run_burst(app, tmp_path, concurrency=1)
    assert (tmp_path / "out" / "c").read_text() == "second attempt"
    assert worker.stats.retried == 1 and worker.stats.succeeded == 1


def test_children_write_checkpoints_a_retry_reads(app: Bridge, tmp_path: Path) -> None:
    memory(app, "b0").send(app.registry.get("t.resume").job(("r",)))
    run_burst(app, tmp_path)
    assert (tmp_path / "out" / "r").read_text() == "{'step': 1}"
