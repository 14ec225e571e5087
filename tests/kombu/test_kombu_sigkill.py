"""A worker SIGKILLed mid-job: the job runs again to success, on each transport.
Two processes sharing one filesystem broker never run a job twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from queuebridge_kombu import KombuBackend

from queuebridge.backend import Backend, BackendSettings
from queuebridge.envelope import Envelope
from tests.kombu.amqp_helpers import RABBIT_URL, delete_queues, queues_of

pytestmark = pytest.mark.slow
CHILD = str(Path(__file__).with_name("kombu_child.py"))
DEADLINE = 20.0


def _spawn(mode: str, url: str, queue: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    return subprocess.Popen([sys.executable, CHILD, mode, url, queue],
                            stdin=subprocess.PIPE if mode == "drain" else None,
                            stdout=subprocess.PIPE, text=True, env=env)


def _first_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """Read one line from the child without blocking past ``timeout``."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline()),  # type: ignore[union-attr]
                              daemon=True)
    reader.start()
    reader.join(timeout)
    assert lines and lines[0], f"child said nothing within {timeout}s"
    return lines[0].strip()


def _backend(url: str, **overrides: object) -> Backend:
    return KombuBackend.from_settings(
        BackendSettings(name="parent", type="kombu", url=url, **overrides))  # type: ignore[arg-type]


def _run_to_success(backend: Backend, queue: str, job_id: str) -> None:
    """What a worker does: lease, run, ack."""
    ran: list[str] = []
    delivery = backend.reserve([queue], timeout=DEADLINE)
    assert delivery is not None and delivery.envelope is not None
    assert delivery.envelope.id == job_id
    ran.append(delivery.envelope.id)  # the no-op task "ran"
    backend.ack(delivery)
    assert ran == [job_id]
    assert backend.reserve([queue], timeout=0.3) is None


def _kill_mid_job(url: str, queue: str, job: Envelope) -> None:
    child = _spawn("block", url, queue)
    try:
        assert _first_line(child, DEADLINE) == f"leased {job.id}"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(DEADLINE)
        if child.stdout is not None:
            child.stdout.close()


@pytest.fixture
def queue() -> str:
    return f"qb-kombu-kill-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def parent_amqp() -> Iterator[Backend]:
    backend = _backend(RABBIT_URL)
    yield backend
    backend.close()
    delete_queues(queues_of([backend]))


@pytest.mark.usefixtures("rabbitmq")
def test_sigkilled_worker_amqp_job_runs_again(parent_amqp: Backend, queue: str) -> None:
    job = Envelope.create("tests.noop", queue=queue)
    parent_amqp.send(job)
    _kill_mid_job(RABBIT_URL, queue, job)
    # RabbitMQ saw the connection drop and requeued the unacked delivery itself.
    _run_to_success(parent_amqp, queue, job.id)


def test_sigkilled_worker_filesystem_job_runs_again(tmp_path: Path, queue: str) -> None:
    url = f"filesystem://{tmp_path}/broker"
    parent = _backend(url, lease_timeout=0.5)
    job = Envelope.create("tests.noop", queue=queue)
    parent.send(job)
    _kill_mid_job(url, queue, job)
    assert parent.reserve([queue], timeout=0.2) is None, "still leased by the dead worker"
    deadline = time.monotonic() + DEADLINE
    while parent.recover() == 0:
        assert time.monotonic() < deadline, "the orphaned lease was never recovered"
        time.sleep(0.1)
    _run_to_success(parent, queue, job.id)


def test_two_processes_share_a_filesystem_broker_without_duplicates(
        tmp_path: Path, queue: str) -> None:
    url = f"filesystem://{tmp_path}/broker"
    jobs = [Envelope.create("tests.noop", (i,), queue=queue) for i in range(300)]
    _backend(url).send_many(jobs)
    children = [_spawn("drain", url, queue) for _ in range(2)]
    for child in children:  # both imported and built: release them together
        assert _first_line(child, DEADLINE) == "ready"
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    outputs = [child.communicate(timeout=60)[0] for child in children]
    ran = [line.split()[1] for out in outputs for line in out.splitlines()]
    assert sorted(ran) == sorted(job.id for job in jobs), "a job ran twice or never"
    assert all(out for out in outputs), "one process did all the work: no sharing tested"


def test_delayed_filesystem_job_survives_a_restart(tmp_path: Path, queue: str) -> None:
    url = f"filesystem://{tmp_path}/broker"
    first = _backend(url)
    job = Envelope.create("tests.noop", queue=queue, delay=0.5)
    first.send(job)
    first.close()
    second = _backend(url)
    assert second.depth(queue) == 1
    assert second.reserve([queue], timeout=0.1) is None
    _run_to_success(second, queue, job.id)
    assert time.time() >= (job.not_before or 0)
