"""The webhook notifier: POST each routing transition, as JSON, to a URL.

A :class:`WebhookNotifier` is a plugin object: register it on a
:class:`~queuebridge.plugins.PluginManager` (a :class:`~queuebridge.bridge.Bridge`
does so itself when ``[queuebridge.notify] webhook_url`` is set). The hooks only
append the event to a bounded in-memory queue; a background thread does the HTTP,
so a slow or dead receiver never delays an enqueue or the router:

- one POST per transition (``BackendDown``, ``BackendUp``, ``Failover``, ``Failback``),
  the body being ``event.to_dict()`` plus ``host`` and ``pid`` (which producer saw it);
- each POST is bounded by ``timeout``; a failed one (connection error, timeout,
  HTTP 5xx, 408 or 429) is retried ``retries`` times with exponential backoff; other
  answers (4xx, 3xx: redirects are not followed) are not retried;
- when ``max_pending`` notifications wait already, the OLDEST is dropped to make room
  (the newest state matters most), logged once per backlog;
- header values (an auth token) and URL credentials never appear in logs or reprs.

Only the standard library (``urllib.request``) is used: the core has no HTTP dependency.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Mapping
from http.client import HTTPException
from typing import Final
from urllib.parse import urlsplit

from queuebridge.errors import ConfigError
from queuebridge.events import BackendDown, BackendUp, Failback, Failover, TransitionEvent
from queuebridge.hookspecs import hookimpl
from queuebridge.redact import redact_text, redact_url
from queuebridge.settings import NotifySettings

__all__ = ["WebhookNotifier"]

log = logging.getLogger("queuebridge.webhook")
_RETRYABLE_STATUS: Final = frozenset({408, 429})
_MAX_BACKOFF: Final = 30.0


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: following one would send the auth headers to another URL."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class WebhookNotifier:
    """POSTs routing transitions to ``url`` from a background thread (a plugin object).

    ``retries`` further attempts follow a failed POST after ``backoff`` seconds,
    doubling each time (capped at 30 s). The thread starts with the first event.
    Call :meth:`close` to deliver what is pending (with a bounded wait) and stop.
    Raises :class:`ConfigError` for a URL that is not ``http(s)://``.
    """

    def __init__(self, url: str, *, timeout: float = 5.0, retries: int = 3,
                 headers: Mapping[str, str] | None = None, backoff: float = 0.5,
                 max_pending: int = 100) -> None:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ConfigError("notify.webhook_url", "must be an http:// or https:// URL")
        self.url = url
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._headers = {"Content-Type": "application/json",
                         "User-Agent": "queuebridge-webhook", **(headers or {})}
        self._pending: deque[tuple[str, bytes]] = deque(maxlen=max_pending)
        self._cond = threading.Condition()
        self._abort = threading.Event()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._overflowing = False
        self._opener = urllib.request.build_opener(_NoRedirect)
        self.sent = 0
        """Notifications the receiver accepted (a 2xx answer)."""
        self.failed = 0
        """Notifications given up after every attempt."""
        self.dropped = 0
        """Notifications dropped unsent: the queue was full, or the notifier was closed."""

    @classmethod
    def from_settings(cls, settings: NotifySettings) -> WebhookNotifier | None:
        """The notifier ``[queuebridge.notify]`` asks for, or ``None`` without a URL."""
        if not settings.webhook_url:
            return None
        return cls(settings.webhook_url, timeout=settings.webhook_timeout,
                   retries=settings.webhook_retries, headers=settings.webhook_headers)

    def __repr__(self) -> str:
        return (f"<WebhookNotifier {redact_url(self.url)!r} timeout={self.timeout} "
                f"retries={self.retries} headers={sorted(self._headers)}>")

    # -- hooks -----------------------------------------------------------------------

    @hookimpl
    def queuebridge_backend_down(self, event: BackendDown) -> None:
        """Queue the transition for delivery."""
        self.notify(event)

    @hookimpl
    def queuebridge_backend_up(self, event: BackendUp) -> None:
        """Queue the transition for delivery."""
        self.notify(event)

    @hookimpl
    def queuebridge_failover(self, event: Failover) -> None:
        """Queue the transition for delivery."""
        self.notify(event)

    @hookimpl
    def queuebridge_failback(self, event: Failback) -> None:
        """Queue the transition for delivery."""
        self.notify(event)

    def notify(self, event: TransitionEvent) -> None:
        """Queue ``event`` for a POST and return at once (never does I/O)."""
        payload = {**event.to_dict(), "host": socket.gethostname(), "pid": os.getpid()}
        body = json.dumps(payload, sort_keys=True).encode()
        with self._cond:
            if self._closing:
                self.dropped += 1
                return
            if len(self._pending) == self._pending.maxlen:
                self.dropped += 1  # the deque's maxlen drops the oldest on append
                if not self._overflowing:
                    log.warning("webhook %s: %d notifications waiting, dropping the oldest "
                                "(logged once until the backlog clears)",
                                redact_url(self.url), len(self._pending))
                self._overflowing = True
            self._pending.append((event.kind, body))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="queuebridge-webhook")
                self._thread.start()
            self._cond.notify()

    # -- lifecycle -------------------------------------------------------------------

    def close(self, timeout: float | None = None) -> bool:
        """Deliver pending notifications, waiting at most ``timeout`` seconds (default:
        one request timeout plus a second), then stop. Idempotent.

        Return True when everything was delivered (or given up on); False when some
        were abandoned at the timeout (they are counted in :attr:`dropped` and logged).
        """
        wait = self.timeout + 1.0 if timeout is None else timeout
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(wait)
        if not thread.is_alive():
            return True
        # Cut retry back-offs short; a POST in flight still ends within its timeout.
        self._abort.set()
        with self._cond:
            left = len(self._pending)
            self._pending.clear()
            self.dropped += left
        log.warning("webhook %s: closed after %.1fs with %d notification(s) undelivered",
                    redact_url(self.url), wait, left)
        return False

    # -- delivery (the background thread) --------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if not self._pending:
                    return
                kind, body = self._pending.popleft()
                if not self._pending:
                    self._overflowing = False
            self._deliver(kind, body)

    def _deliver(self, kind: str, body: bytes) -> None:
        error = ""
        for attempt in range(self.retries + 1):
            if attempt and self._abort.wait(min(self.backoff * 2 ** (attempt - 1), _MAX_BACKOFF)):
                break
            error, retryable = self._post(body)
            if not error:
                self.sent += 1
                return
            if not retryable:
                break
        self.failed += 1
        log.warning("webhook %s: %s notification not delivered (%d attempt(s)): %s",
                    redact_url(self.url), kind, attempt + 1, error)

    def _post(self, body: bytes) -> tuple[str, bool]:
        """One POST. Return ``("", _)`` on success, else the error and whether to retry."""
        # S310: the scheme was checked (http/https only) in __init__.
        request = urllib.request.Request(self.url, data=body, headers=self._headers,  # noqa: S310
                                         method="POST")
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                response.read(65536)
        except urllib.error.HTTPError as exc:
            exc.close()
            retry = exc.code >= 500 or exc.code in _RETRYABLE_STATUS
            return f"HTTP {exc.code} {exc.reason}", retry
        except urllib.error.URLError as exc:
            return redact_text(f"{type(exc.reason).__name__}: {exc.reason}"), True
        except (OSError, HTTPException) as exc:
            # Timeouts (TimeoutError), resets and malformed answers: the receiver may recover.
            return redact_text(f"{type(exc).__name__}: {exc}"), True
        return "", True
