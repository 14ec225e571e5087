"""The ``kombu`` backend type: one registered class that picks its broker by URL scheme."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from queuebridge.backend import Backend, BackendSettings, Capabilities
from queuebridge.errors import ConfigError
from queuebridge_kombu.options import (
    AMQP_SCHEMES,
    FILESYSTEM_SCHEME,
    KombuOptions,
    parse_options,
    scheme_of,
)

__all__ = ["KombuBackend"]


class KombuBackend(Backend):
    """Registered as backend type ``kombu``.

    :meth:`from_settings` returns an :class:`~queuebridge_kombu.amqp.AMQPBackend`
    for ``amqp://``, ``amqps://`` and ``pyamqp://`` URLs and a
    :class:`~queuebridge_kombu.filesystem.FilesystemBackend` for ``filesystem://``.
    The capabilities declared here are the AMQP ones; each implementation declares
    its own.
    """

    capabilities: ClassVar[Capabilities] = Capabilities(delayed=True, batch_send=True)
    default_url: ClassVar[str] = "filesystem://.queuebridge/broker"
    option_keys: ClassVar[frozenset[str]] = frozenset(
        {"exchange", "quorum", "prefetch", "heartbeat", "ssl", "fsync", "poll_interval"}
    )

    def __init__(self, settings: BackendSettings) -> None:
        super().__init__(settings)
        self.options: KombuOptions = parse_options(
            settings.options, f"queuebridge.backends[{settings.name}].options"
        )

    @classmethod
    def from_settings(cls, settings: BackendSettings) -> Backend:
        """Build the implementation the URL's scheme asks for. Does not connect."""
        if cls is not KombuBackend:
            return cls(settings)
        scheme = scheme_of(settings.url or cls.default_url)
        if scheme == FILESYSTEM_SCHEME:
            from queuebridge_kombu.filesystem import FilesystemBackend

            return FilesystemBackend(settings)
        if scheme in AMQP_SCHEMES:
            from queuebridge_kombu.amqp import AMQPBackend

            return AMQPBackend(settings)
        raise ConfigError(
            f"queuebridge.backends[{settings.name}].url",
            f"unsupported scheme {scheme!r} for type 'kombu' "
            f"(use {', '.join(AMQP_SCHEMES)} or {FILESYSTEM_SCHEME})",
        )

    @classmethod
    def validate_options(cls, options: Mapping[str, Any], path: str) -> Mapping[str, Any]:
        """Check keys and types of the adapter options; raise ``ConfigError`` naming
        ``path.key``."""
        parse_options(options, path)
        return dict(options)
