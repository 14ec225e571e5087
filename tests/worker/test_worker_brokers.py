"""A worker against real brokers: Redis restarted under it, and one job id on two brokers."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from queuebridge_kombu import KombuBackend
from queuebridge_rq import RQBackend

from queuebridge.backend import BackendSettings
from queuebridge.bridge import Bridge
from queuebridge.drill.servers import RedisProcess
from queuebridge.envelope import Envelope
from queuebridge.worker import Worker, WorkerOptions
from tests.helpers import wait_until

FAST = {"poll_timeout": 0.1, "reconnect_backoff": 0.05, "reconnect_backoff_max": 0.2,
        "retry_backoff": 0.05, "retry_backoff_max": 0.1, "grace_period": 5.0}


def rq_backend(url: str) -> RQBackend:
    return RQBackend(BackendSettings(name="rq", type="rq", url=url, timeout=0.5,
                                     connect_timeout=0.5, lease_timeout=2.0))


@contextmanager
def running(worker: Worker) -> Iterator[None]:
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        worker.stop()
        thread.join(15)
        assert not thread.is_alive(), "the worker did not stop"


def test_redis_restarted_under_a_running_worker_is_consumed_again(
        redis_server: RedisProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="queuebridge.worker")
    ran: list[int] = []
    bridge = Bridge([rq_backend(redis_server.url)])
    task = bridge.task(name="t.count")(ran.append)
    worker = Worker(bridge, WorkerOptions(state=tmp_path / "state.sqlite3", **FAST))
    with running(worker):
        task.enqueue_many([(i,) for i in range(20)])
        wait_until(lambda: len(ran) == 20, timeout=10, message="first batch ran")

        redis_server.kill()
        wait_until(lambda: "backend 'rq' unavailable" in caplog.text, timeout=10,
                   message="the worker noticed the outage")
        redis_server.start()  # same port, same AOF: the queue survives
        task.enqueue_many([(i,) for i in range(20, 40)])
        wait_until(lambda: len(ran) == 40, timeout=15, message="jobs after the restart ran")
        assert "backend 'rq' is back" in caplog.text
    assert sorted(ran) == list(range(40))
    assert worker.stats.succeeded == 40
    bridge.close()


def test_a_job_on_both_backends_runs_once_and_the_duplicate_is_counted(
        redis_server: RedisProcess, tmp_path: Path) -> None:
    ran: list[str] = []
    filesystem = KombuBackend.from_settings(BackendSettings(
        name="fs", type="kombu", url=f"filesystem://{tmp_path / 'broker'}", timeout=1.0))
    bridge = Bridge([rq_backend(redis_server.url), filesystem])
    bridge.task(name="t.once")(ran.append)
    envelope = Envelope.create("t.once", ("payload",), job_id="same-id-on-both")
    for backend in bridge.backends.values():
        backend.send(envelope)  # what a failover after a lost ack can produce

    worker = Worker(bridge, WorkerOptions(burst=True, concurrency=4,
                                          state=tmp_path / "state.sqlite3", **FAST))
    assert worker.run() == 0
    assert ran == ["payload"]
    assert worker.stats.succeeded == 1
    assert worker.stats.duplicates == 1
    assert all(backend.depth("default") == 0 for backend in bridge.backends.values())
    bridge.close()
