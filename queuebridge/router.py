"""Routing jobs to the best live backend, and to the spool when none is live.

The path of one ``send_many`` call:

1. Try the *up* backends in configured order. A down backend is not tried at all:
   it costs nothing per job; the :class:`~queuebridge.health.Monitor` probes it.
2. A ``BackendUnavailable`` opens that backend's circuit (at ``failure_threshold``
   consecutive failures, 1 by default) and the same call moves on to the next one.
   Any other ``BackendError`` also moves on, but opens the circuit only after
   ``error_threshold`` consecutive failures: the broker answered, so it is not
   known to be dead.
3. Nothing accepted the batch: write it to the spool (if enabled) and return
   ``"spool"``; else raise ``DeadlineExceeded`` or ``NoBackendAvailable``. When every
   backend that was tried *answered* with a refusal (no outage), raise
   ``JobRejected`` instead: spooling cannot help a job no broker takes.

No call holds the caller past ``RouterSettings.deadline`` (plus one spool write).
An attempt whose backend timeout fits in the time left is a direct call in the
caller's thread (the fast path); one that does not fit runs on a short-lived helper
thread and is abandoned at the deadline. An abandoned send that later succeeds
leaves a duplicate with the same job id (see docs/routing.md).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import NamedTuple

from queuebridge.backend import Backend
from queuebridge.envelope import Envelope
from queuebridge.errors import (
    BackendError,
    BackendUnavailable,
    DeadlineExceeded,
    EnqueueError,
    JobRejected,
    NoBackendAvailable,
)
from queuebridge.health import BackendHealth, HealthBoard, Monitor
from queuebridge.plugins import PluginManager
from queuebridge.redact import redact_text
from queuebridge.relay import EventRelay
from queuebridge.settings import RouterSettings, SpoolSettings
from queuebridge.spool import Drainer, Spool

__all__ = ["Router"]

log = logging.getLogger("queuebridge.router")
SPOOL = "spool"
_MONITOR_JOIN = 1.0
"""Seconds ``close`` waits for the monitor; a ping in flight cannot be interrupted."""


class Router:
    """Sends each batch, whole, to the first live backend that accepts it. Thread-safe.

    Owns the health board, the monitor thread and, when the spool is enabled, the
    spool and its drainer. Threads start lazily: the monitor when a backend first
    goes down, the drainer when something is spooled (or at start, when the spool
    file holds rows left by an earlier process).
    """

    def __init__(self, backends: Sequence[Backend], settings: RouterSettings,
                 plugins: PluginManager, *, spool: SpoolSettings | None = None) -> None:
        self.backends = list(backends)
        self.settings = settings
        self.plugins = plugins
        self.spool_settings = spool if spool is not None and spool.enabled else None
        self._by_name = {backend.name: backend for backend in self.backends}
        self._events = EventRelay(plugins.emit_transition)
        self._board = HealthBoard(
            list(self._by_name), settings, self._events.put,
            fallback=SPOOL if self.spool_settings is not None else "none",
        )
        self._lock = threading.Lock()
        self._closed = False
        self._monitor: Monitor | None = None
        self._spool: Spool | None = None
        self._drainer: Drainer | None = None
        spool = self.spool_settings
        # Rows left by a process that died while everything was down: drain them now.
        if (spool is not None and spool.drain_on_start and spool.path.exists()
                and self._open_spool().count() > 0):
            self._ensure_drainer()

    # -- status ------------------------------------------------------------------------

    def flush_events(self, timeout: float = 5.0) -> bool:
        """Wait until every transition noticed so far reached the plugins (they are
        delivered on their own thread); False if ``timeout`` passed first."""
        return self._events.flush(timeout)

    def health(self) -> list[BackendHealth]:
        """A snapshot of every backend's health, in configured order."""
        return self._board.snapshot()

    @property
    def preferred(self) -> str:
        """Where new jobs go now: the first up backend, else ``"spool"`` (or ``"none"``)."""
        return self._board.preferred

    @property
    def spool(self) -> Spool | None:
        """The spool, once opened (``None`` while nothing needed it)."""
        return self._spool

    # -- sending -------------------------------------------------------------------------

    def send_many(self, envelopes: Sequence[Envelope]) -> list[str]:
        """Send ``envelopes`` as one batch; return where each went (a backend or ``"spool"``).

        Raises :class:`SpoolFull` (spool bounded and full), :class:`DeadlineExceeded`
        or :class:`NoBackendAvailable` (spool disabled). On any of these the caller
        still holds the jobs: nothing was accepted.
        """
        if self._closed:
            raise EnqueueError("the router is closed")
        if not envelopes:
            return []
        deadline = time.perf_counter() + self.settings.deadline
        placed, errors = self._send_live(envelopes, deadline)
        if placed is None:
            placed = self._fall_back(envelopes, errors, deadline)
        for envelope in envelopes:
            self.plugins.job_enqueued(envelope, placed)
        return [placed] * len(envelopes)

    def _send_live(self, envelopes: Sequence[Envelope], deadline: float
                   ) -> tuple[str | None, list[_Failure]]:
        """Try the up backends in order; return the one that accepted, and the failures."""
        errors: list[_Failure] = []
        for name in self._board.live:
            if self._attempt(self._by_name[name], envelopes, deadline, errors):
                return name, errors
        return None, errors

    def _attempt(self, backend: Backend, envelopes: Sequence[Envelope], deadline: float,
                 errors: list[_Failure]) -> bool:
        # perf_counter is monotonic: one clock serves the deadline and the latency.
        start = time.perf_counter()
        remaining = deadline - start
        if remaining <= 0:
            errors.append(_Failure(f"{backend.name}: not tried, the enqueue deadline "
                                   f"({self.settings.deadline}s) passed", unavailable=True))
            return False
        try:
            if backend.settings.timeout <= remaining:
                backend.send_many(envelopes)
            else:
                self._send_bounded(backend, envelopes, remaining)
        except BackendError as exc:
            unavailable = isinstance(exc, BackendUnavailable)
            errors.append(_Failure(str(exc), unavailable))
            self._board.send_failed(backend.name, str(exc), unavailable=unavailable)
            if not self._board.is_up(backend.name):
                self._ensure_monitor()
            return False
        self._board.send_ok(backend.name, time.perf_counter() - start)
        return True

    def _send_bounded(self, backend: Backend, envelopes: Sequence[Envelope],
                      remaining: float) -> None:
        """Send on a helper thread and stop waiting after ``remaining`` seconds.

        A daemon thread per attempt, not a pool: a pool's workers stuck on a hung
        broker would queue attempts to healthy ones behind them. This path is only
        taken when the deadline is shorter than the backend's own timeout.
        """
        future: Future[None] = Future()

        def run() -> None:
            try:
                backend.send_many(envelopes)
            except Exception as exc:  # noqa: BLE001 -- handed to the waiting caller
                future.set_exception(exc)
            else:
                future.set_result(None)

        threading.Thread(target=run, name=f"queuebridge-send-{backend.name}",
                         daemon=True).start()
        try:
            future.result(timeout=remaining)
        except FutureTimeout:
            future.add_done_callback(_abandoned(backend.name, envelopes))
            raise BackendUnavailable(
                f"no answer within the enqueue deadline ({self.settings.deadline}s)",
                backend=backend.name,
            ) from None

    def _fall_back(self, envelopes: Sequence[Envelope], errors: list[_Failure],
                   deadline: float) -> str:
        why = _why(errors)
        if _rejected(errors):
            # Every backend answered and said no: an outage buffer cannot help, and a
            # spooled job that no broker takes would block the spool's drain for good.
            raise JobRejected(f"every backend refused the job: {why}")
        if self.spool_settings is not None:
            self._open_spool().put_many(envelopes)
            drainer = self._ensure_drainer()
            if drainer is not None:
                drainer.wake()
            return SPOOL
        if time.perf_counter() >= deadline:
            raise DeadlineExceeded(f"no backend accepted the job in time: {why}")
        raise NoBackendAvailable(f"no backend accepted the job and the spool is off: {why}")

    def _replay(self, envelopes: Sequence[Envelope]) -> None:
        """The drainer's send: live backends only, never back into the spool."""
        placed, errors = self._send_live(envelopes,
                                         time.perf_counter() + self.settings.deadline)
        if placed is None:
            if _rejected(errors):
                raise JobRejected(f"every live backend refused the batch: {_why(errors)}")
            raise NoBackendAvailable(_why(errors))
        for envelope in envelopes:
            self.plugins.job_enqueued(envelope, placed)

    # -- threads -----------------------------------------------------------------------

    def _ensure_monitor(self) -> None:
        with self._lock:
            if self._monitor is None and not self._closed:
                self._monitor = Monitor(self._board, self._probe, self._backend_up)
            monitor = self._monitor
        if monitor is not None:
            monitor.wake()

    def _probe(self, name: str) -> float:
        return self._by_name[name].ping()

    def _backend_up(self) -> None:
        drainer = self._drainer
        if drainer is not None:
            drainer.wake()

    def _open_spool(self) -> Spool:
        with self._lock:
            if self._spool is None and self._closed:
                # A send racing close(): the caller gets an error, no spool is left open.
                raise EnqueueError("the router is closed")
            if self._spool is None:
                assert self.spool_settings is not None
                self._spool = Spool(self.spool_settings.path, self.spool_settings.max_jobs)
            return self._spool

    def _ensure_drainer(self) -> Drainer | None:
        spool = self._open_spool()
        with self._lock:
            if self._drainer is None and not self._closed:
                assert self.spool_settings is not None
                self._drainer = Drainer(
                    spool, self._replay, lambda: bool(self._board.live),
                    batch=self.spool_settings.drain_batch,
                    idle_wait=self.settings.probe_max_interval,
                )
            return self._drainer

    def close(self) -> None:
        """Stop the monitor and the drainer, close the spool. Idempotent.

        Waits up to the enqueue deadline for a drain batch in flight (its rows stay
        spooled if it is abandoned)."""
        with self._lock:
            self._closed = True
            monitor, drainer, spool = self._monitor, self._drainer, self._spool
        if monitor is not None:
            monitor.stop(_MONITOR_JOIN)
        if drainer is not None:
            drainer.stop(self.settings.deadline)
        if spool is not None:
            spool.close()
        self._events.close(_MONITOR_JOIN)


class _Failure(NamedTuple):
    """Why one backend did not take a batch."""

    message: str
    unavailable: bool
    """An outage (refused, hung, deadline) rather than the broker saying no."""


def _why(errors: Sequence[_Failure]) -> str:
    return redact_text("; ".join(e.message for e in errors) or "every backend is down")


def _rejected(errors: Sequence[_Failure]) -> bool:
    """True when backends were tried and every one answered with a refusal."""
    return bool(errors) and not any(e.unavailable for e in errors)


def _abandoned(backend: str, envelopes: Sequence[Envelope]) -> Callable[[Future[None]], None]:
    """Log the outcome of a send the caller stopped waiting for."""

    def report(future: Future[None]) -> None:
        if future.exception() is None:
            ids = ", ".join(envelope.id for envelope in envelopes[:5])
            log.warning("a send to %r abandoned at the enqueue deadline succeeded later: "
                        "%d job(s) may be duplicated (ids %s...)", backend, len(envelopes), ids)

    return report
