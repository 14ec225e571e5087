"""Private redis-server processes for the rq backend's tests (helpers; fixtures in conftest).

Each server listens on a free port (or only on TLS / a Unix socket), keeps nothing
on disk, and is killed at teardown. Without a ``redis-server`` binary the tests fail
in CI (``CI`` set) and skip elsewhere. The shared Redis on 6379 is never touched.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from queuebridge_rq import RQBackend

from queuebridge.testing.plugin import free_port
from tests.conftest import server_missing

START_DEADLINE = 10.0
MakeRQ = Callable[..., RQBackend]
"""The ``make_rq`` fixture: ``make_rq(url, options=..., **settings) -> RQBackend``."""


@dataclass
class RedisServer:
    """A running private redis-server."""

    process: subprocess.Popen[bytes]
    url: str
    options: dict[str, Any] = field(default_factory=dict)
    port: int = 0

    @property
    def pid(self) -> int:
        """The server's process id (to SIGSTOP it)."""
        return self.process.pid

    def client(self) -> redis.Redis:
        """A plain redis-py client (no queuebridge) for checking what is stored."""
        kwargs = {key: value for key, value in self.options.items() if key.startswith("ssl_")}
        if "password" in self.options:
            kwargs["password"] = self.options["password"]
        return redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5,
                                    **kwargs)

    def stop(self) -> None:
        """Kill the server (SIGCONT first, in case a test left it stopped)."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.kill()
        self.process.wait(timeout=10)


def start_redis(workdir: Path, url: str, *args: str, options: dict[str, Any] | None = None,
                port: int = 0, config: Path | None = None) -> RedisServer:
    """Start ``redis-server [config] args`` in ``workdir``; return once it answers PING."""
    binary = shutil.which("redis-server")
    if binary is None:
        server_missing("redis-server (the binary on PATH)")
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "redis.log"
    process = subprocess.Popen(
        [str(binary), *([str(config)] if config else []), "--save", "", "--appendonly", "no",
         "--dir", str(workdir), "--bind", "127.0.0.1", "--logfile", str(log), *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    server = RedisServer(process, url, dict(options or {}), port)
    deadline = time.monotonic() + START_DEADLINE
    while True:
        if process.poll() is not None:
            detail = log.read_text()[-2000:] if log.exists() else "(no log)"
            raise RuntimeError(f"redis-server exited: {detail}")
        try:
            if server.client().ping():
                return server
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"redis-server did not answer within {START_DEADLINE}s")
        time.sleep(0.02)


def start_plain(workdir: Path, *args: str, options: dict[str, Any] | None = None
                ) -> RedisServer:
    """A TCP server on a free port."""
    port = free_port()
    return start_redis(workdir, f"redis://127.0.0.1:{port}/0", "--port", str(port), *args,
                       options=options, port=port)


def make_certificates(directory: Path) -> dict[str, str]:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost (openssl CLI)."""
    if shutil.which("openssl") is None:
        server_missing("openssl (to make a throwaway certificate)")
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.pem"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    commands = [
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=queuebridge-test-ca", "-keyout", ca_key, "-out", ca_cert],
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
         "-keyout", key, "-out", csr],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key,
         "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", cert],
    ]
    for command in commands:
        subprocess.run([str(part) for part in command], check=True, capture_output=True,
                       timeout=60)
    return {"ca": str(ca_cert), "cert": str(cert), "key": str(key)}


def redis_has_tls() -> bool:
    """True when this redis-server was built with TLS (it accepts ``--tls-port``)."""
    binary = shutil.which("redis-server")
    if binary is None:
        return False
    version = subprocess.run([binary, "--version"], check=False, capture_output=True,
                             text=True, timeout=10)
    # Debian/Ubuntu builds link OpenSSL; the version line does not say, so ask the loader.
    ldd = subprocess.run(["ldd", binary], check=False, capture_output=True, text=True, timeout=10)
    return "libssl" in ldd.stdout or "tls" in version.stdout.lower()
