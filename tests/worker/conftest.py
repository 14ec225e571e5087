"""Fixtures for worker tests against real brokers: a private redis-server per test,
an app module written to ``tmp_path``, and worker processes started from the CLI.

Tasks in the app synchronise with the test through files in ``out/`` (a task marks
``<name>.started.<pid>`` and waits for ``out/release``), never through sleeps.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest

from queuebridge.drill.servers import RedisProcess

APP = '''
import os
import time
from pathlib import Path

from queuebridge.backend import BackendSettings
from queuebridge.bridge import Bridge
from queuebridge.context import current_job
from queuebridge.settings import Settings, WorkerSettings
from queuebridge_rq import RQBackend

OUT = Path(os.environ["QB_OUT"])
QUEUE = "work"
RQ = BackendSettings(name="rq", type="rq", url=os.environ["QB_REDIS_URL"], timeout=0.5,
                     connect_timeout=0.5, lease_timeout=2.0)
bridge = Bridge([RQBackend(RQ)], settings=Settings(
    backends=(RQ,), app="qbapp:bridge",
    worker=WorkerSettings(queues=(QUEUE,), concurrency=2, poll_timeout=0.2, grace_period=20,
                          heartbeat_interval=0.3, state=os.environ["QB_STATE"])))


def wait_for_release(limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not (OUT / "release").exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the test never released the job")
        time.sleep(0.01)


@bridge.task(name="t.gated", queue=QUEUE)
def gated(name: str) -> None:
    job = current_job()
    seen = job.last_checkpoint()
    job.checkpoint({"step": 1, "by": os.getpid()})
    (OUT / f"{name}.started.{os.getpid()}").write_text(repr(seen))
    wait_for_release()
    (OUT / f"{name}.done.{os.getpid()}").write_text(repr(seen))


@bridge.task(name="t.mark", queue=QUEUE)
def mark(name: str) -> None:
    (OUT / f"{name}.done.{os.getpid()}").write_text("")


@bridge.task(name="t.hangs_once", queue=QUEUE, timeout=1.0, retries=1)
def hangs_once(name: str) -> None:
    if current_job().attempt == 1:
        time.sleep(60)
    (OUT / f"{name}.done.{os.getpid()}").write_text(str(current_job().attempt))
'''


@dataclass
class App:
    """The app module (importable here and in worker processes) and its files."""

    root: Path
    out: Path
    state: Path
    env: dict[str, str]
    module: ModuleType
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def marks(self, pattern: str) -> list[Path]:
        """Files in ``out/`` matching ``pattern`` (``k.done.*``)."""
        return sorted(self.out.glob(pattern))

    def release(self) -> None:
        """Let gated tasks finish."""
        (self.out / "release").write_text("")

    def cli(self, *args: str) -> subprocess.Popen[bytes]:
        """Start ``queuebridge --app qbapp:bridge <args>`` in the app directory."""
        command = [str(Path(sys.executable).parent / "queuebridge"), "--app", "qbapp:bridge",
                   "--log-level", "INFO", *args]
        # A file, not a pipe: nobody reads a pipe, and a full one would block the worker.
        with (self.root / f"process{len(self.processes)}.log").open("wb") as log:
            process = subprocess.Popen(command, cwd=self.root, env=self.env,
                                       stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def log(self, process: subprocess.Popen[bytes]) -> str:
        """What ``process`` printed so far."""
        return (self.root / f"process{self.processes.index(process)}.log").read_text()


@pytest.fixture
def app(tmp_path: Path, redis_server: RedisProcess, monkeypatch: pytest.MonkeyPatch
        ) -> Iterator[App]:
    root = tmp_path / "app"
    out = tmp_path / "out"
    root.mkdir()
    out.mkdir()
    (root / "qbapp.py").write_text(textwrap.dedent(APP))
    state = tmp_path / "state.sqlite3"
    env = {"QB_OUT": str(out), "QB_REDIS_URL": redis_server.url, "QB_STATE": str(state)}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.syspath_prepend(str(root))
    sys.modules.pop("qbapp", None)
    handle = App(root, out, state, {**os.environ, **env}, importlib.import_module("qbapp"))
    yield handle
    for process in handle.processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
    handle.module.bridge.close()
    sys.modules.pop("qbapp", None)
