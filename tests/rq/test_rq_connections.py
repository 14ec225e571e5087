"""URLs a production user has: password, Unix socket, database number, Sentinel; options."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from queuebridge_rq import RQBackend, RQOptions
from queuebridge_rq.connection import connect, parse_sentinel_url

from queuebridge import Envelope
from queuebridge.backend import BackendSettings
from queuebridge.errors import BackendUnavailable, ConfigError
from queuebridge.testing.plugin import free_port
from tests.rq.servers import MakeRQ, RedisServer, start_plain, start_redis

SECRET = "s3cr3t-Pa55"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, Path]]:
    """A server with ``requirepass`` that also listens on a Unix socket."""
    workdir = tmp_path_factory.mktemp("redis-auth")
    sock = workdir / "redis.sock"
    server = start_plain(workdir, "--requirepass", SECRET, "--unixsocket", str(sock),
                         "--unixsocketperm", "700", options={"password": SECRET})
    yield server, sock
    server.stop()


def _round_trip(backend: RQBackend) -> None:
    queue = f"qb-conn-{uuid.uuid4().hex[:8]}"
    sent = Envelope.create("tests.noop", (1,), queue=queue)
    backend.send(sent)
    delivery = backend.reserve([queue], timeout=5)
    assert delivery is not None
    assert delivery.envelope == sent
    backend.ack(delivery)


def test_password_in_url(secured: tuple[RedisServer, Path], make_rq: MakeRQ) -> None:
    server, _ = secured
    _round_trip(make_rq(f"redis://:{SECRET}@127.0.0.1:{server.port}/0"))


def test_password_as_option(secured: tuple[RedisServer, Path], make_rq: MakeRQ) -> None:
    server, _ = secured
    _round_trip(make_rq(server.url, options={"password": SECRET}))


def test_wrong_password_is_unavailable_and_redacted(secured: tuple[RedisServer, Path],
                                                    make_rq: MakeRQ) -> None:
    server, _ = secured
    backend = make_rq(f"redis://:wrong-{SECRET}@127.0.0.1:{server.port}/0")
    assert SECRET not in repr(backend)
    assert SECRET not in repr(backend.settings)
    with pytest.raises(BackendUnavailable) as caught:
        backend.ping()
    assert SECRET not in str(caught.value)
    missing = make_rq(f"redis://127.0.0.1:{server.port}/0")
    with pytest.raises(BackendUnavailable, match="Authentication"):
        missing.send(Envelope.create("tests.noop"))


def test_unix_socket_with_db_number(secured: tuple[RedisServer, Path], make_rq: MakeRQ) -> None:
    server, sock = secured
    backend = make_rq(f"unix://{sock}?db=3", options={"password": SECRET})
    _round_trip(backend)
    queue = f"qb-db-{uuid.uuid4().hex[:8]}"
    backend.send(Envelope.create("tests.noop", queue=queue))
    plain = server.client()
    assert plain.llen(f"rq:queue:{queue}") == 0, "db 0 must not see db 3's jobs"
    assert plain.execute_command("SELECT", 3)
    assert plain.llen(f"rq:queue:{queue}") == 1


def test_db_number_in_tcp_url(redis_server: RedisServer, make_rq: MakeRQ) -> None:
    backend = make_rq(f"redis://127.0.0.1:{redis_server.port}/5")
    queue = f"qb-db-{uuid.uuid4().hex[:8]}"
    backend.send(Envelope.create("tests.noop", queue=queue))
    assert redis.Redis(port=redis_server.port, db=5).llen(f"rq:queue:{queue}") == 1
    assert redis.Redis(port=redis_server.port, db=0).llen(f"rq:queue:{queue}") == 0


@pytest.fixture
def sentinel(redis_server: RedisServer, tmp_path: Path) -> Iterator[RedisServer]:
    """A real Sentinel (``redis-server --sentinel``) watching the plain server."""
    port = free_port()
    config = tmp_path / "sentinel.conf"
    config.write_text(f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
                      f"sentinel monitor qbmaster 127.0.0.1 {redis_server.port} 1\n")
    server = start_redis(tmp_path / "data", f"redis://127.0.0.1:{port}/0", "--sentinel",
                         port=port, config=config)
    yield server
    server.stop()


def test_sentinel_url_finds_the_master(sentinel: RedisServer, make_rq: MakeRQ) -> None:
    _round_trip(make_rq(f"redis+sentinel://127.0.0.1:{sentinel.port}/qbmaster/0"))


def test_sentinel_options_find_the_master(sentinel: RedisServer, make_rq: MakeRQ) -> None:
    options = {"sentinels": [f"127.0.0.1:{sentinel.port}"], "sentinel_master": "qbmaster"}
    _round_trip(make_rq("redis+sentinel:///", options=options))


def test_unknown_sentinel_master_is_unavailable(sentinel: RedisServer, make_rq: MakeRQ) -> None:
    backend = make_rq(f"redis+sentinel://127.0.0.1:{sentinel.port}/nosuch/0")
    with pytest.raises(BackendUnavailable, match="MasterNotFound"):
        backend.ping()


def test_sentinel_url_parsing() -> None:
    target = parse_sentinel_url("redis+sentinel://:pw@h1:26379,h2:26380/main/2", RQOptions())
    assert target.sentinels == (("h1", 26379), ("h2", 26380))
    assert (target.master, target.db, target.password) == ("main", 2, "pw")
    with pytest.raises(ConfigError, match="master"):
        parse_sentinel_url("redis+sentinel://h1:26379", RQOptions())
    with pytest.raises(ConfigError, match="host:port"):
        parse_sentinel_url("redis+sentinel://h1/main", RQOptions())


def test_bad_scheme_names_the_path() -> None:
    with pytest.raises(ConfigError, match="url: unsupported scheme 'amqp'"):
        connect("amqp://x", 1.0, 1.0, RQOptions())


@pytest.mark.parametrize(("options", "message"), [
    ({"sentinel": ["h:1"]}, r"backends\[0\]\.options\.sentinel: unknown option"),
    ({"result_ttl": "1h"}, r"options\.result_ttl: must be seconds"),
    ({"ssl_cert_reqs": "maybe"}, r"options\.ssl_cert_reqs: must be one of"),
    ({"sentinels": ["no-port"]}, r"options\.sentinels: must be a non-empty list"),
    ({"password": 12345}, r"options\.password: must be a string, got \*\*\*"),
])
def test_options_are_validated(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RQBackend.validate_options(options, "queuebridge.backends[0].options")


def test_options_have_safe_repr() -> None:
    backend = RQBackend(BackendSettings(name="p", type="rq", url="redis://:pw@h/0",
                                        options={"password": "pw"}))
    assert "pw" not in repr(backend.options)
    assert "pw" not in repr(backend)


def _hammer(backend: RQBackend, threads: int = 8, calls: int = 50) -> list[BaseException]:
    """``threads`` threads sharing ``backend``, each making ``calls`` Redis calls."""
    queue = f"qb-pool-{uuid.uuid4().hex[:8]}"
    errors: list[BaseException] = []

    def run() -> None:
        for _ in range(calls):
            try:
                backend.depth(queue)
            except Exception as exc:
                errors.append(exc)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
        assert not worker.is_alive(), "a pool caller never got a connection"
    return errors


def test_a_full_pool_waits_for_a_connection_instead_of_failing(
    redis_server: RedisServer, make_rq: MakeRQ
) -> None:
    backend = make_rq(redis_server.url, options={"max_connections": 2})
    assert _hammer(backend) == [], "a busy but healthy Redis was reported as down"
    pool = backend.client.connection_pool
    assert isinstance(pool, redis.BlockingConnectionPool)
    assert pool.timeout == 2.0, "callers wait at most the backend's timeout"


def test_a_full_sentinel_pool_waits_too(sentinel: RedisServer, make_rq: MakeRQ) -> None:
    backend = make_rq(f"redis+sentinel://127.0.0.1:{sentinel.port}/qbmaster/0",
                      options={"max_connections": 2})
    assert _hammer(backend) == []
    assert isinstance(backend.client.connection_pool, redis.BlockingConnectionPool)


def test_without_max_connections_the_pool_is_unbounded(redis_server: RedisServer,
                                                       make_rq: MakeRQ) -> None:
    pool = make_rq(redis_server.url).client.connection_pool
    assert not isinstance(pool, redis.BlockingConnectionPool)
