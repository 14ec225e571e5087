"""Worker processes on a real (private) Redis: SIGKILL and SIGTERM mid-job, the
``workers`` command, and hard timeouts in ``pool="processes"``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from queuebridge.worker import Worker, WorkerOptions
from tests.helpers import wait_until
from tests.worker.conftest import App


def listed_workers(app: App) -> list[dict[str, object]]:
    """``queuebridge workers --json`` for the app's state file."""
    command = [str(Path(sys.executable).parent / "queuebridge"), "--app", "qbapp:bridge",
               "workers", "--json"]
    done = subprocess.run(command, cwd=app.root, env=app.env, capture_output=True, timeout=30,
                          check=True)
    workers: list[dict[str, object]] = json.loads(done.stdout)["workers"]
    return workers


def test_sigkill_mid_job_runs_it_again_elsewhere_from_its_checkpoint(app: App) -> None:
    bridge = app.module.bridge
    ref = bridge.registry.get("t.gated").enqueue("k")
    first = app.cli("worker")
    wait_until(lambda: app.marks("k.started.*"), timeout=20, message="first worker started k")
    first.kill()  # SIGKILL: no handler runs, the lease and the dedup claim are orphaned
    first.wait(timeout=10)

    app.release()
    second = app.cli("worker")
    # Lease (2 s) expires -> the second worker's recover requeues it -> its dedup claim
    # has expired too -> it runs again, and resumes from the first run's checkpoint.
    wait_until(lambda: app.marks("k.done.*"), timeout=20, message="k ran again")
    (done,) = app.marks("k.done.*")
    assert done.name == f"k.done.{second.pid}"
    assert json.loads(done.read_text().replace("'", '"'))["by"] == first.pid
    backend = bridge.backends["rq"]
    wait_until(lambda: backend.job_status(ref.id) == "finished", timeout=10)
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=20) == 0, app.log(second)


def test_sigterm_mid_job_finishes_it_and_exits_0(app: App) -> None:
    bridge = app.module.bridge
    ref = bridge.registry.get("t.gated").enqueue("t")
    worker = app.cli("worker")
    wait_until(lambda: app.marks("t.started.*"), timeout=20, message="t started")
    listed = listed_workers(app)
    assert [(w["pid"], w["alive"]) for w in listed] == [(worker.pid, True)]
    # One snapshot can predate the job by up to a heartbeat interval: wait for the next.
    wait_until(lambda: listed_workers(app)[0]["current_jobs"] == [ref.id], timeout=10,
               message="the heartbeat lists the running job")

    worker.send_signal(signal.SIGTERM)
    wait_until(lambda: "finishing in-flight jobs" in app.log(worker), timeout=10,
               message="the worker saw SIGTERM")
    assert worker.poll() is None  # still finishing the job
    app.release()
    assert worker.wait(timeout=20) == 0, app.log(worker)
    assert [p.name for p in app.marks("t.done.*")] == [f"t.done.{worker.pid}"]
    backend = bridge.backends["rq"]
    assert backend.job_status(ref.id) == "finished"
    assert backend.depth("work") == 0
    assert listed_workers(app) == []  # a clean exit removes its heartbeat


def test_hard_timeout_kills_the_child_and_retries_the_job(app: App) -> None:
    bridge = app.module.bridge
    ref = bridge.registry.get("t.hangs_once").enqueue("h")
    worker = Worker(bridge, WorkerOptions.from_settings(
        bridge.settings.worker, pool="processes", concurrency=1, burst=True,
        retry_backoff=0.05, retry_backoff_max=0.1))
    assert worker.run() == 0
    (done,) = app.marks("h.done.*")
    assert done.read_text() == "2"  # the second attempt, in a fresh child
    assert worker.stats.failed == 1 and worker.stats.retried == 1
    assert worker.stats.succeeded == 1
    assert bridge.backends["rq"].job_status(ref.id) == "finished"
