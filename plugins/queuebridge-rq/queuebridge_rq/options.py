"""Adapter options for the ``rq`` backend type, validated once when config is loaded.

Every key below may appear in a backend's ``options`` table::

    [[queuebridge.backends]]
    name = "primary"
    type = "rq"
    url = "rediss://redis.internal:6380/0"
    options = { ssl_ca_certs = "/etc/ssl/redis-ca.pem", result_ttl = 3600 }

Errors name the key's full path (``queuebridge.backends[0].options.result_ttl``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from queuebridge.errors import ConfigError

__all__ = ["OPTION_KEYS", "RQOptions", "check_options"]

_SECONDS_PER_YEAR: Final = 365 * 24 * 3600
_CERT_REQS: Final = frozenset({"required", "optional", "none"})


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _is_bool(value: object) -> bool:
    return isinstance(value, bool)


def _is_ttl(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= -1


def _is_positive_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _is_cert_reqs(value: object) -> bool:
    return isinstance(value, str) and value in _CERT_REQS


def _is_sentinel_list(value: object) -> bool:
    return (isinstance(value, list) and bool(value)
            and all(isinstance(item, str) and ":" in item for item in value))


_CHECKS: Final[Mapping[str, tuple[Callable[[object], bool], str]]] = {
    "username": (_is_str, "a string"),
    "password": (_is_str, "a string"),
    "ssl_ca_certs": (_is_str, "a path to a PEM file"),
    "ssl_certfile": (_is_str, "a path to a PEM file"),
    "ssl_keyfile": (_is_str, "a path to a PEM file"),
    "ssl_cert_reqs": (_is_cert_reqs, "one of 'required', 'optional', 'none'"),
    "ssl_check_hostname": (_is_bool, "true or false"),
    "sentinels": (_is_sentinel_list, 'a non-empty list of "host:port" strings'),
    "sentinel_master": (_is_str, "the master's service name"),
    "sentinel_password": (_is_str, "a string"),
    "result_ttl": (_is_ttl, "seconds (an integer >= -1; -1 keeps forever, 0 deletes)"),
    "failure_ttl": (_is_ttl, "seconds (an integer >= -1; -1 keeps forever)"),
    "poll_interval": (_is_positive_number, "a number of seconds > 0"),
    "health_check_interval": (_is_positive_int, "an integer number of seconds > 0"),
    "max_connections": (_is_positive_int, "an integer > 0"),
}
OPTION_KEYS: Final = frozenset(_CHECKS)


def check_options(options: Mapping[str, Any], path: str) -> dict[str, Any]:
    """Return a copy of ``options`` or raise :class:`ConfigError` naming ``path.key``."""
    for key, value in options.items():
        if key not in _CHECKS:
            allowed = ", ".join(sorted(_CHECKS))
            raise ConfigError(f"{path}.{key}", f"unknown option (allowed: {allowed})")
        check, expected = _CHECKS[key]
        if not check(value):
            shown = "***" if "password" in key else repr(value)
            raise ConfigError(f"{path}.{key}", f"must be {expected}, got {shown}")
    return dict(options)


@dataclass(frozen=True, slots=True)
class RQOptions:
    """The adapter's options with their defaults filled in."""

    username: str | None = None
    password: str | None = None
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_cert_reqs: str = "required"
    ssl_check_hostname: bool = True
    sentinels: tuple[str, ...] = ()
    sentinel_master: str | None = None
    sentinel_password: str | None = None
    result_ttl: int = 500
    """Seconds a finished job stays in RQ's FinishedJobRegistry (RQ's own default)."""
    failure_ttl: int = _SECONDS_PER_YEAR
    """Seconds a dead-lettered job stays in RQ's FailedJobRegistry (RQ's own default)."""
    poll_interval: float = 0.1
    """Longest pause between two polls of an empty queue inside ``reserve``."""
    health_check_interval: int = 30
    max_connections: int | None = None

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> RQOptions:
        """Build from already-validated options (see :func:`check_options`)."""
        values = dict(options)
        if "sentinels" in values:
            values["sentinels"] = tuple(values["sentinels"])
        return cls(**values)

    def __repr__(self) -> str:
        return (f"RQOptions(ssl={self.ssl_ca_certs is not None or self.ssl_certfile is not None}, "
                f"sentinels={list(self.sentinels)}, sentinel_master={self.sentinel_master!r}, "
                f"result_ttl={self.result_ttl}, failure_ttl={self.failure_ttl})")
