"""One AMQP connection and channel, with failover, timeouts and error translation.

A :class:`Link` wraps a :class:`kombu.Connection` (which parses the URL, handles
``amqps://`` and rotates over ``;``-separated alternates) and works on the
py-amqp channel underneath it. py-amqp is not thread-safe: every use of a link's
channel happens under ``link.lock``.

Failure policy: any driver error drops the connection (no I/O: a hung broker
cannot block the drop) and is raised as ``BackendUnavailable``; the next call
reconnects within ``connect_timeout`` per host. That is how "after healing, the
adapter reconnects by itself" works: there is no background reconnect loop.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final

import amqp.exceptions
import kombu.connection
import kombu.exceptions

from queuebridge.backend import BackendSettings
from queuebridge.errors import BackendError, BackendUnavailable
from queuebridge.redact import redact_text
from queuebridge_kombu.options import KombuOptions, scheme_of, split_hosts

__all__ = ["DRIVER_ERRORS", "Link"]

DRIVER_ERRORS: Final[tuple[type[BaseException], ...]] = (
    amqp.exceptions.AMQPError,
    amqp.exceptions.MessageNacked,
    kombu.exceptions.KombuError,
    OSError,  # socket.error, ConnectionError, TimeoutError, ssl.SSLError
)
"""Everything py-amqp, Kombu and the socket layer raise on a broken link."""

_CONFIG_ERRORS: Final = (
    amqp.exceptions.PreconditionFailed,
    amqp.exceptions.NotFound,
)
"""Broker answers that mean our request is wrong, not that the broker is down."""


class Link:
    """A lazily connected AMQP connection + channel. Use under :attr:`lock`."""

    def __init__(self, settings: BackendSettings, options: KombuOptions, *,
                 heartbeat: float = 0.0,
                 on_connect: Callable[[Any], None] | None = None) -> None:
        self.settings = settings
        self.lock = threading.RLock()
        self.generation = 0
        """Bumped on every drop: delivery tags of an older generation are void."""
        self._hosts = split_hosts(settings.url)
        self._options = options
        self._heartbeat = heartbeat
        self.on_connect = on_connect
        """Called with each new channel before first use (confirm mode, qos ...)."""
        self._kombu: Any = None
        self._channel: Any = None

    @property
    def connected(self) -> bool:
        """True while a channel is open (as far as we know without I/O)."""
        return self._channel is not None

    @property
    def connection(self) -> Any:
        """The py-amqp connection (connected: call :meth:`channel` first)."""
        return self._kombu.connection if self._kombu is not None else None

    def _new_kombu(self) -> Any:
        timeout = self.settings.timeout
        ssl_arg = self._options.ssl_argument() if scheme_of(self.settings.url) == "amqps" \
            else False
        factory: Any = kombu.connection.Connection  # untyped: keep Any at the boundary
        return factory(
            ";".join(self._hosts),
            connect_timeout=self.settings.connect_timeout,
            heartbeat=self._heartbeat,
            ssl=ssl_arg,
            failover_strategy="round-robin",
            transport_options={
                # A safety net under the explicit per-call timeouts: a blocking
                # read or write on a dead peer never outlives settings.timeout.
                "read_timeout": timeout,
                "write_timeout": timeout,
            },
        )

    def channel(self) -> Any:
        """The open channel, connecting first if needed (each host once)."""
        if self._channel is not None:
            return self._channel
        if self._kombu is None:
            self._kombu = self._new_kombu()
        self._kombu.ensure_connection(
            max_retries=max(0, len(self._hosts) - 1),
            interval_start=0, interval_step=0, interval_max=0,
            reraise_as_library_errors=False,
        )
        channel = self._kombu.connection.channel()
        if self.on_connect is not None:
            self.on_connect(channel)
        self._channel = channel
        return channel

    def drop(self) -> None:
        """Forget the connection without talking to the broker (it may be hung)."""
        self.generation += 1
        self._channel = None
        if self._kombu is not None:
            kombu_conn, self._kombu = self._kombu, None
            with contextlib.suppress(*DRIVER_ERRORS):  # the socket is thrown away anyway
                kombu_conn.collect()

    def close(self) -> None:
        """Close politely (bounded by the socket timeouts); never raises."""
        self.generation += 1
        self._channel = None
        if self._kombu is not None:
            kombu_conn, self._kombu = self._kombu, None
            try:
                with self._timeout(kombu_conn, self.settings.timeout):
                    kombu_conn.release()
            except DRIVER_ERRORS:
                kombu_conn.collect()

    @contextmanager
    def guard(self, operation: str) -> Iterator[Any]:
        """Run an operation on the channel: bounded by ``timeout``, driver errors
        translated, the link dropped after a failure. Yields the channel."""
        try:
            channel = self.channel()
            with channel.connection.transport.having_timeout(self.settings.timeout):
                yield channel
        except _CONFIG_ERRORS as exc:
            self.drop()
            raise BackendError(self._describe(operation, exc),
                               backend=self.settings.name) from exc
        except DRIVER_ERRORS as exc:
            self.drop()
            raise BackendUnavailable(self._describe(operation, exc),
                                     backend=self.settings.name) from exc

    @staticmethod
    @contextmanager
    def _timeout(kombu_conn: Any, seconds: float) -> Iterator[None]:
        """Put a socket timeout on every read inside (py-amqp reads with
        ``timeout=None`` inherit the socket's own timeout)."""
        # ``.connected`` first: Kombu's ``.connection`` would try to connect.
        connected = kombu_conn is not None and kombu_conn.connected
        transport = kombu_conn.connection.transport if connected else None
        if transport is None or transport.sock is None:
            yield
            return
        with transport.having_timeout(seconds):
            yield

    def _describe(self, operation: str, exc: BaseException) -> str:
        kind = "timed out" if isinstance(exc, socket.timeout | TimeoutError) else type(
            exc).__name__
        if isinstance(exc, ssl.SSLError):
            kind = "TLS error"
        return redact_text(f"{operation} failed ({kind}): {exc or type(exc).__name__} "
                           f"[{self.settings.safe_url}]")
