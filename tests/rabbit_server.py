"""A private RabbitMQ node for tests that kill the broker (never the shared one).

It boots in about 7 s on the development VM, on free ports, with its own node name and
database directory, so a SIGKILL and a restart keep what it had durably accepted.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from queuebridge.drill.servers import free_port

__all__ = ["RabbitProcess", "find_rabbitmq_server"]

_CANDIDATES = ("/usr/lib/rabbitmq/bin/rabbitmq-server", "/usr/sbin/rabbitmq-server")


def find_rabbitmq_server() -> str | None:
    """The ``rabbitmq-server`` script, or ``None`` when RabbitMQ is not installed."""
    for candidate in _CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("rabbitmq-server")


def amqp_answers(port: int, timeout: float = 0.5) -> bool:
    """True when something on ``port`` answers the AMQP 0-9-1 protocol header."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            return bool(sock.recv(8))
    except OSError:
        return False


class RabbitProcess:
    """One private node; ``kill`` is a crash (SIGKILL to the whole process group)."""

    def __init__(self, directory: Path, binary: str) -> None:
        self.directory = directory
        self.binary = binary
        self.port = free_port()
        self.node = f"qbtest-{uuid.uuid4().hex[:8]}@localhost"
        self._env = {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(directory / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(directory / "rabbitmq"),
        }
        self._process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        """An AMQP URL for the default vhost (guest/guest, allowed on loopback)."""
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def start(self, timeout: float = 60.0) -> None:
        """Boot the node and wait until it answers AMQP."""
        with (self.directory / "server.out").open("ab") as out:
            self._process = subprocess.Popen([self.binary], env=self._env, stdout=out,
                                             stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not amqp_answers(self.port):
            if self._process.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited; see {self.directory}/server.out")
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"private RabbitMQ not ready within {timeout} s")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL every process of the node: a crash, not a shutdown."""
        if self._process is None or self._process.poll() is not None:
            return
        os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while amqp_answers(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop for good."""
        self.kill()
