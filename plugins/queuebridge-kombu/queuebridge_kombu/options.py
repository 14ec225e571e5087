"""Adapter options (``[[queuebridge.backends]] options``) and URL helpers.

The ``kombu`` backend type serves two brokers, chosen by the URL scheme:

* ``amqp://``, ``amqps://``, ``pyamqp://`` (``;``-separated for Kombu alternates): RabbitMQ;
* ``filesystem://<dir>``: the embedded, single-host filesystem broker.

Options are validated once, when the configuration is loaded, into a frozen
:class:`KombuOptions`; unknown keys and wrong types raise
:class:`~queuebridge.errors.ConfigError` naming the key's path.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final

from queuebridge.errors import ConfigError

__all__ = [
    "AMQP_SCHEMES",
    "FILESYSTEM_SCHEME",
    "KombuOptions",
    "filesystem_root",
    "is_filesystem_url",
    "parse_options",
    "split_hosts",
]

AMQP_SCHEMES: Final = ("amqp", "amqps", "pyamqp")
FILESYSTEM_SCHEME: Final = "filesystem"
DEFAULT_FILESYSTEM_ROOT: Final = ".queuebridge/broker"
_SSL_KEYS: Final = frozenset(
    {"ca_certs", "certfile", "keyfile", "cert_reqs", "server_hostname"}
)
_CERT_REQS: Final = {
    "required": ssl.CERT_REQUIRED,
    "optional": ssl.CERT_OPTIONAL,
    "none": ssl.CERT_NONE,
}


@dataclass(frozen=True, slots=True)
class KombuOptions:
    """Adapter-specific settings of one ``kombu`` backend."""

    exchange: str = "queuebridge"
    """AMQP: the durable direct exchange every queue is bound to."""
    quorum: bool = False
    """AMQP: declare work and dead-letter queues as quorum queues (clustered RabbitMQ)."""
    prefetch: int = 100
    """AMQP: unacked deliveries the consumer may hold (``basic.qos``)."""
    heartbeat: float = 10.0
    """AMQP: heartbeat interval of the consumer connection, seconds (0 disables)."""
    ssl: Mapping[str, Any] = field(default_factory=dict)
    """AMQP: TLS settings for ``amqps://`` (ca_certs, certfile, keyfile, cert_reqs,
    server_hostname)."""
    fsync: bool = True
    """Filesystem: fsync each job file and the queue folder before ``send`` returns."""
    poll_interval: float = 0.02
    """Filesystem: how often an idle ``reserve`` looks for new files, seconds."""

    def ssl_argument(self) -> dict[str, Any] | bool:
        """The ``ssl`` argument for :class:`kombu.Connection` (``True`` = system defaults)."""
        if not self.ssl:
            return True
        result = dict(self.ssl)
        if "cert_reqs" in result:
            result["cert_reqs"] = _CERT_REQS[result["cert_reqs"]]
        return result


def parse_options(options: Mapping[str, Any], path: str) -> KombuOptions:
    """Validate raw options into :class:`KombuOptions`. Raises ``ConfigError``."""
    known = {f.name: f for f in fields(KombuOptions)}
    for key, value in options.items():
        if key not in known:
            allowed = ", ".join(sorted(known))
            raise ConfigError(f"{path}.{key}", f"unknown option (allowed: {allowed})")
        _check_type(key, value, f"{path}.{key}")
    return KombuOptions(**dict(options))


def _check_type(key: str, value: Any, where: str) -> None:
    if key == "exchange":
        if not isinstance(value, str) or not value:
            raise ConfigError(where, "must be a non-empty string")
    elif key in ("quorum", "fsync"):
        if not isinstance(value, bool):
            raise ConfigError(where, "must be true or false")
    elif key == "prefetch":
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
            raise ConfigError(where, "must be an integer from 1 to 65535")
    elif key in ("heartbeat", "poll_interval"):
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise ConfigError(where, "must be a number of seconds >= 0")
    elif key == "ssl":
        _check_ssl(value, where)


def _check_ssl(value: Any, where: str) -> None:
    if not isinstance(value, Mapping):
        raise ConfigError(where, "must be a table of TLS settings")
    for name, item in value.items():
        if name not in _SSL_KEYS:
            raise ConfigError(f"{where}.{name}",
                              f"unknown TLS setting (allowed: {', '.join(sorted(_SSL_KEYS))})")
        if not isinstance(item, str):
            raise ConfigError(f"{where}.{name}", "must be a string")
    if value.get("cert_reqs", "required") not in _CERT_REQS:
        raise ConfigError(f"{where}.cert_reqs", f"must be one of {', '.join(_CERT_REQS)}")


def scheme_of(url: str) -> str:
    """The lower-cased scheme of ``url`` (of its first host for multi-host URLs)."""
    head = url.split(";", 1)[0]
    return head.split("://", 1)[0].lower() if "://" in head else ""


def is_filesystem_url(url: str) -> bool:
    """True for ``filesystem://...`` URLs."""
    return scheme_of(url) == FILESYSTEM_SCHEME


def filesystem_root(url: str) -> Path:
    """The broker folder of a ``filesystem://`` URL.

    ``filesystem://.queuebridge/broker`` is relative to the working directory,
    ``filesystem:///var/lib/qb`` is absolute; an empty path means the default.
    """
    rest = url.split("://", 1)[1] if "://" in url else ""
    rest = rest.split("?", 1)[0]
    return Path(rest or DEFAULT_FILESYSTEM_ROOT)


def split_hosts(url: str) -> list[str]:
    """The individual broker URLs of a ``;``-separated multi-host URL."""
    return [part.strip() for part in url.split(";") if part.strip()]
