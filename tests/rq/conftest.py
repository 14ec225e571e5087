"""Fixtures: private redis-servers (plain, TLS, per-test) and an RQBackend factory.

Without a ``redis-server`` binary the tests fail in CI (``CI`` set) and skip elsewhere.
The shared Redis on 6379 is never touched.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from queuebridge_rq import RQBackend

from queuebridge.backend import BackendSettings
from queuebridge.testing.plugin import free_port
from tests.conftest import server_missing
from tests.rq.servers import (
    MakeRQ,
    RedisServer,
    make_certificates,
    redis_has_tls,
    start_plain,
    start_redis,
)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private plain-TCP redis-server shared by the session."""
    server = start_plain(tmp_path_factory.mktemp("redis-plain"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private TLS-only redis-server with a throwaway CA."""
    if not redis_has_tls():
        server_missing("redis-server built with TLS")
    workdir = tmp_path_factory.mktemp("redis-tls")
    certs = make_certificates(workdir / "certs")
    port = free_port()
    server = start_redis(
        workdir, f"rediss://127.0.0.1:{port}/0",
        "--port", "0", "--tls-port", str(port), "--tls-cert-file", certs["cert"],
        "--tls-key-file", certs["key"], "--tls-ca-cert-file", certs["ca"],
        "--tls-auth-clients", "no",
        options={"ssl_ca_certs": certs["ca"]}, port=port,
    )
    yield server
    server.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test alone (to pause, kill or fill)."""
    server = start_plain(tmp_path / "redis")
    yield server
    server.stop()


@pytest.fixture
def make_rq() -> Iterator[MakeRQ]:
    """``make_rq(url, options=..., **settings)``: an RQBackend closed at teardown."""
    built: list[RQBackend] = []

    def make(url: str, options: dict[str, Any] | None = None, **settings: Any) -> RQBackend:
        values: dict[str, Any] = {"timeout": 2.0, "connect_timeout": 2.0, **settings}
        backend = RQBackend(BackendSettings(name=values.pop("name", "rq"), type="rq", url=url,
                                            options=options or {}, **values))
        built.append(backend)
        return backend

    yield make
    for backend in built:
        backend.close()
