"""Build a fail-fast ``redis.Redis`` client from a backend's URL and options.

Accepted URLs:

* ``redis://[[user]:password@]host[:port][/db]`` — plain TCP
* ``rediss://...`` — TLS (certificate options in ``options``)
* ``unix:///path/to/redis.sock[?db=N&password=...]`` — a Unix socket
* ``redis+sentinel://[[user]:password@]host:port[,host:port...]/master[/db]`` — Redis
  Sentinel; ``options.sentinels`` / ``options.sentinel_master`` may name them instead.

Every connection gets a connect timeout, a socket timeout, TCP keepalive, a health
check, and **no** driver-level retries: a dead Redis must fail the call at once so
the router can fail over, instead of being retried inside the driver.

With ``options.max_connections`` the pool *blocks* (up to the backend's ``timeout``)
for a free connection: redis-py's plain pool raises ``MaxConnectionsError`` (a
``ConnectionError``) at once, which would report a healthy but busy Redis as down.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool

from queuebridge.errors import ConfigError
from queuebridge_rq.options import RQOptions

__all__ = ["DEFAULT_URL", "SentinelTarget", "connect", "parse_sentinel_url"]

DEFAULT_URL: Final = "redis://127.0.0.1:6379/0"
_SCHEMES: Final = frozenset({"redis", "rediss", "unix", "redis+sentinel"})


@dataclass(frozen=True, slots=True)
class SentinelTarget:
    """Where to find a master through Sentinel."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None


class _BlockingSentinelPool(SentinelConnectionPool, redis.BlockingConnectionPool):
    """Sentinel's master discovery with the blocking pool's wait for a free connection
    (redis-py ships no such pool). ``SentinelConnectionPool`` passes the remaining
    keyword arguments (``max_connections``, ``timeout``) on to ``BlockingConnectionPool``."""


def _host_port(text: str, path: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(path, f"a sentinel must be 'host:port', got {text!r}")
    return host.strip("[]"), int(port)


def parse_sentinel_url(url: str, options: RQOptions, path: str = "url") -> SentinelTarget:
    """Read a ``redis+sentinel://`` URL (or the sentinel options) into a target."""
    parts = urlsplit(url)
    netloc = parts.netloc
    username = password = None
    if "@" in netloc:
        userinfo, _, netloc = netloc.rpartition("@")
        user, sep, secret = userinfo.partition(":")
        username, password = (unquote(user) or None, unquote(secret)) if sep else (None,
                                                                                   unquote(user))
    hosts = [_host_port(item, path) for item in netloc.split(",") if item]
    hosts += [_host_port(item, f"{path}.sentinels") for item in options.sentinels]
    segments = [segment for segment in parts.path.split("/") if segment]
    master = segments[0] if segments else options.sentinel_master
    if not hosts:
        raise ConfigError(path, "Sentinel needs at least one sentinel 'host:port'")
    if not master:
        raise ConfigError(path, "Sentinel needs the master's name: "
                                "redis+sentinel://host:26379/<master> or options.sentinel_master")
    db_text = segments[1] if len(segments) > 1 else "0"
    if not db_text.isdigit():
        raise ConfigError(path, f"database must be a number, got {db_text!r}")
    return SentinelTarget(tuple(hosts), master, int(db_text),
                          username or options.username, password or options.password)


def _common_kwargs(timeout: float, connect_timeout: float, options: RQOptions) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": connect_timeout,
        "retry_on_timeout": False,
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": options.health_check_interval,
    }
    if options.max_connections is not None:
        kwargs["max_connections"] = options.max_connections
        kwargs["timeout"] = timeout  # how long a caller waits for a free connection
    if options.username is not None:
        kwargs["username"] = options.username
    if options.password is not None:
        kwargs["password"] = options.password
    return kwargs


def _tls_kwargs(options: RQOptions) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "ssl_cert_reqs": options.ssl_cert_reqs,
        "ssl_check_hostname": options.ssl_check_hostname and options.ssl_cert_reqs != "none",
    }
    for key in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        value = getattr(options, key)
        if value is not None:
            kwargs[key] = value
    return kwargs


def connect(url: str, timeout: float, connect_timeout: float, options: RQOptions,
            path: str = "url") -> redis.Redis:
    """A client for ``url``. Does not connect yet: the first command does.

    Raises :class:`ConfigError` (naming ``path``) for a URL it cannot use.
    """
    url = url or DEFAULT_URL
    scheme = urlsplit(url).scheme
    if scheme not in _SCHEMES:
        raise ConfigError(path, f"unsupported scheme {scheme!r} (use one of "
                                f"{', '.join(sorted(_SCHEMES))})")
    kwargs = _common_kwargs(timeout, connect_timeout, options)
    if scheme == "redis+sentinel" or options.sentinels:
        return _sentinel_client(url, kwargs, options, path)
    if scheme != "unix":
        # TCP only: the Unix-socket connection class rejects keepalive arguments.
        kwargs["socket_keepalive"] = True
    if scheme == "rediss":
        kwargs.update(_tls_kwargs(options))
    pool_class = (redis.BlockingConnectionPool if options.max_connections is not None
                  else redis.ConnectionPool)
    try:
        pool = pool_class.from_url(url, **kwargs)
    except ValueError as exc:
        raise ConfigError(path, f"invalid Redis URL: {exc}") from exc
    return redis.Redis(connection_pool=pool)


def _sentinel_client(url: str, kwargs: dict[str, Any], options: RQOptions,
                     path: str) -> redis.Redis:
    target = parse_sentinel_url(url, options, path)
    sentinel_kwargs = {key: kwargs[key] for key in
                       ("socket_timeout", "socket_connect_timeout", "retry")}
    if options.sentinel_password is not None:
        sentinel_kwargs["password"] = options.sentinel_password
    kwargs.pop("password", None)
    kwargs.pop("username", None)
    sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_kwargs)
    pool_class = (_BlockingSentinelPool if options.max_connections is not None
                  else SentinelConnectionPool)
    client: redis.Redis = sentinel.master_for(
        target.master, db=target.db, username=target.username, password=target.password,
        socket_keepalive=True, connection_pool_class=pool_class, **kwargs,
    )
    return client
