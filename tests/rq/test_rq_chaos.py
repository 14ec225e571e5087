"""Chaos on a private redis-server: a worker SIGKILLed mid-job, Redis paused with SIGSTOP."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from queuebridge import Bridge, Envelope
from queuebridge.errors import BackendUnavailable
from queuebridge.worker import Worker, WorkerOptions
from tests.helpers import wait_until
from tests.rq.servers import MakeRQ, RedisServer

pytestmark = pytest.mark.slow

_CHILD = textwrap.dedent("""
    import sys, time
    from queuebridge.backend import BackendSettings
    from queuebridge_rq import RQBackend

    url, queue = sys.argv[1], sys.argv[2]
    backend = RQBackend(BackendSettings(name="rq", type="rq", url=url, lease_timeout=1.0))
    delivery = backend.reserve([queue], timeout=10)
    print("started", delivery.job_id if delivery else "-", flush=True)
    sys.stdin.read()   # "running the job" until killed
""")


def _read_line(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    assert ready, f"the worker printed nothing within {timeout}s"
    return process.stdout.readline().strip()


def test_worker_killed_mid_job_is_recovered_and_runs(private_redis: RedisServer,
                                                    make_rq: MakeRQ) -> None:
    queue = f"qb-kill-{uuid.uuid4().hex[:8]}"
    backend = make_rq(private_redis.url, lease_timeout=1.0)
    job = Envelope.create("tests.rq.record", ("payload",), queue=queue)
    backend.send(job)
    with subprocess.Popen([sys.executable, "-c", _CHILD, private_redis.url, queue],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as child:
        try:
            assert _read_line(child, timeout=20) == f"started {job.id}"
            assert backend.job_status(job.id) == "started"
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
    assert backend.depth(queue) == 0, "the leased job must not be visible before recover"
    recovered: list[int] = []
    wait_until(lambda: recovered.append(backend.recover()) or sum(recovered) > 0, timeout=10,
               interval=0.05, message="recover never returned the orphaned lease")
    assert backend.job_status(job.id) == "queued"

    ran: list[str] = []
    bridge = Bridge([backend])
    bridge.task(name="tests.rq.record")(ran.append)
    worker = Worker(bridge, WorkerOptions(queues=(queue,), burst=True, concurrency=1,
                                          poll_timeout=0.2, grace_period=2.0))
    assert worker.run() == 0
    assert ran == ["payload"]
    assert backend.job_status(job.id) == "finished"


def test_paused_redis_fails_send_and_ping_within_timeout(private_redis: RedisServer,
                                                        make_rq: MakeRQ) -> None:
    timeout = 0.5
    backend = make_rq(private_redis.url, timeout=timeout, connect_timeout=timeout)
    fresh = make_rq(private_redis.url, timeout=timeout, connect_timeout=timeout)
    queue = f"qb-stop-{uuid.uuid4().hex[:8]}"
    backend.ping()
    os.kill(private_redis.pid, signal.SIGSTOP)
    try:
        operations = {
            "ping": backend.ping,
            "send": lambda: backend.send(Envelope.create("tests.rq.noop", queue=queue)),
            "send_many": lambda: backend.send_many(
                [Envelope.create("tests.rq.noop", queue=queue) for _ in range(3)]),
            "reserve": lambda: backend.reserve([queue], timeout=0.2),
            "fresh ping": fresh.ping,
            "fresh send": lambda: fresh.send(Envelope.create("tests.rq.noop", queue=queue)),
        }
        for name, operation in operations.items():
            start = time.monotonic()
            with pytest.raises(BackendUnavailable):
                operation()
            elapsed = time.monotonic() - start
            # A fresh connection's TCP handshake completes in the kernel's backlog; the
            # first reply then waits for the socket timeout, so one timeout each.
            assert elapsed < 2 * timeout + 0.5, f"{name} took {elapsed:.2f}s"
    finally:
        os.kill(private_redis.pid, signal.SIGCONT)
    wait_until(lambda: _answers(backend), timeout=10, message="no recovery after SIGCONT")


def _answers(backend: object) -> bool:
    try:
        backend.ping()  # type: ignore[attr-defined]
    except BackendUnavailable:
        return False
    return True
