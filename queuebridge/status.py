"""A point-in-time health report of a Bridge (what ``queuebridge status`` shows).

- **Backends.** Each backend is pinged in its own thread, so one hung broker costs its
  own timeout and not the sum of all of them; a backend that does not answer within
  ``timeout + connect_timeout`` (plus a margin) is reported down even if its adapter
  breaks the contract and hangs. Queue depths are read only from backends that are up.
  Since when a backend is in its state, and how often it went down, come from a
  :class:`StateTracker` seeded with the router's health records and updated by each
  probe (``status --watch`` refreshes through one tracker).
- **Spool.** How many jobs wait in the spool file (read without creating it).
- **Workers.** Live and dead workers in the worker state store (their heartbeats).

:attr:`StatusReport.overall` is also the CLI's exit code: 0 every backend up; 1 some
down (degraded) or none up but the spool accepts jobs (spooling); 2 an enqueue would
raise (nothing up and no spool, or the spool is full or unreadable).
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from queuebridge.backend import Backend
from queuebridge.errors import QueueBridgeError
from queuebridge.health import BackendHealth
from queuebridge.heartbeat import WorkerInfo
from queuebridge.redact import redact_text
from queuebridge.settings import SpoolSettings, WorkerSettings
from queuebridge.spool import Spool
from queuebridge.state import open_worker_state, url_scheme

if TYPE_CHECKING:
    from queuebridge.bridge import Bridge
    from queuebridge.plugins import PluginManager

__all__ = [
    "BackendStatus", "Overall", "SpoolStatus", "StateTracker", "StatusReport", "WorkersStatus",
    "backend_status", "bridge_status", "format_age", "gather_status", "spool_status",
    "watch_status", "workers_status",
]

_MARGIN: Final = 1.0
"""Seconds granted beyond a backend's own timeouts before its probe is abandoned."""


class Overall(enum.Enum):
    """The state of the whole Bridge; ``exit_code`` is the CLI's exit status."""

    UP = ("up", 0)
    DEGRADED = ("degraded", 1)
    """Some backends are down; jobs go to the others."""
    SPOOLING = ("spooling", 1)
    """Every backend is down; jobs go to the spool, which has room."""
    DOWN = ("down", 2)
    """An enqueue would raise: nothing is up and no spool takes the job."""

    def __init__(self, label: str, exit_code: int) -> None:
        self.label = label
        self.exit_code = exit_code


@dataclass(frozen=True, slots=True)
class BackendStatus:
    """One backend as seen by one probe. ``url`` is already redacted.

    ``depths`` maps each inspected queue to its number of waiting jobs, or ``None`` when
    the depth could not be read; ``error`` says why the backend is down (redacted).
    """

    name: str
    type: str
    url: str
    up: bool
    latency: float | None = None
    """Seconds the ping took, when up."""
    depths: dict[str, int | None] = field(default_factory=dict)
    error: str = ""
    """Why the backend is down, starting with its name (``primary: connection refused``)."""
    since: float | None = None
    """Unix time it entered this state, as far as this observer knows."""
    since_exact: bool = False
    """False when the state was found at the first look: it began before ``since``."""
    down_count: int = 0
    """Times its circuit opened in the router, plus the times a probe found it down after
    it was up; a backend already down at the first look counts once."""

    @property
    def latency_ms(self) -> float | None:
        """The ping latency in milliseconds, rounded to 0.1 ms."""
        return None if self.latency is None else round(self.latency * 1000, 1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name, "type": self.type, "url": self.url,
            "state": "up" if self.up else "down", "since": self.since,
            "since_exact": self.since_exact, "down_count": self.down_count,
            "latency_ms": self.latency_ms, "depths": dict(self.depths),
            "error": self.error or None,
        }


@dataclass(frozen=True, slots=True)
class SpoolStatus:
    """The spool file: how many jobs wait in it (``None`` when it could not be read)."""

    path: str
    enabled: bool
    max_jobs: int
    count: int | None = 0
    oldest_at: float | None = None
    """Unix time the oldest waiting job was spooled."""
    error: str = ""

    @property
    def accepting(self) -> bool:
        """True when an enqueue with every backend down would be spooled, not refused."""
        return self.enabled and self.count is not None and self.count < self.max_jobs

    def summary(self, now: float) -> str:
        """One line for the status table."""
        if self.count is None:
            return f"spool: unreadable ({self.path}): {self.error}"
        if not self.enabled:
            return ("spool: off" if not self.count else f"spool: off, but {self.count} job(s) "
                    f"left in {self.path} (queuebridge spool drain)")
        if not self.count:
            return f"spool: empty ({self.path})"
        oldest = "" if self.oldest_at is None else f", oldest {format_age(now - self.oldest_at)}"
        full = " FULL" if self.count >= self.max_jobs else ""
        return (f"spool: {self.count} job(s) waiting in {self.path}{oldest} "
                f"(max {self.max_jobs}){full}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"path": self.path, "enabled": self.enabled, "count": self.count,
                "max_jobs": self.max_jobs, "oldest_at": self.oldest_at,
                "error": self.error or None}


@dataclass(frozen=True, slots=True)
class WorkersStatus:
    """Workers registered in the worker state store. ``location`` is redacted."""

    location: str
    workers: tuple[WorkerInfo, ...] = ()
    error: str = ""

    @property
    def live(self) -> list[WorkerInfo]:
        """Workers whose heartbeat is recent."""
        return [worker for worker in self.workers if worker.alive]

    def summary(self) -> str:
        """One line for the status table."""
        if self.error:
            return f"workers: unknown ({self.location}): {self.error}"
        if not self.workers:
            return f"workers: none registered ({self.location})"
        live = self.live
        names = ", ".join(worker.name for worker in live[:5]) + (", ..." if len(live) > 5 else "")
        dead = len(self.workers) - len(live)
        return (f"workers: {len(live)} live{f' ({names})' if live else ''}, {dead} dead "
                f"({self.location})")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "location": self.location, "live": len(self.live),
            "dead": len(self.workers) - len(self.live), "error": self.error or None,
            "workers": [{"name": w.name, "host": w.host, "pid": w.pid, "alive": w.alive,
                         "last_heartbeat": w.last_heartbeat, "queues": list(w.queues),
                         "backends": list(w.backends), "current_jobs": list(w.current_jobs)}
                        for w in self.workers],
        }


@dataclass(frozen=True, slots=True)
class StatusReport:
    """Every backend's status, in configured (priority) order, the spool and the workers."""

    source: str
    """Where the configuration came from (a file, ``<default>`` or ``<code>``)."""
    queues: tuple[str, ...]
    backends: tuple[BackendStatus, ...]
    checked_at: float = field(default_factory=time.time)
    spool: SpoolStatus | None = None
    workers: WorkersStatus | None = None

    @property
    def overall(self) -> Overall:
        """UP when every backend answered; DEGRADED when some did; SPOOLING when none did
        but the spool accepts jobs; DOWN when an enqueue would raise."""
        up = sum(1 for backend in self.backends if backend.up)
        if up == len(self.backends):
            return Overall.UP
        if up:
            return Overall.DEGRADED
        return Overall.SPOOLING if self.spool is not None and self.spool.accepting else Overall.DOWN

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"state": ..., "backends": [...], "spool": ..., ...}``."""
        return {
            "state": self.overall.label,
            "source": self.source,
            "checked_at": self.checked_at,
            "queues": list(self.queues),
            "backends": [backend.to_dict() for backend in self.backends],
            "spool": None if self.spool is None else self.spool.to_dict(),
            "workers": None if self.workers is None else self.workers.to_dict(),
        }


@dataclass(slots=True)
class _Seen:
    up: bool
    since: float
    exact: bool
    downs: int
    probed: bool = False


class StateTracker:
    """Since when each backend has been up or down, across the refreshes of one watcher.

    Seeded with the router's health records (exact once the router saw the backend
    change). A change between two probes is dated to the later one (exact to one
    refresh); a state found at the first look is dated to it, marked inexact.
    """

    def __init__(self, health: Sequence[BackendHealth] = ()) -> None:
        self._seen = {h.name: _Seen(h.up, h.since, h.down_count > 0, h.down_count)
                      for h in health}

    def observe(self, status: BackendStatus, at: float) -> BackendStatus:
        """Return ``status`` with ``since``, ``since_exact`` and ``down_count`` filled in."""
        seen = self._seen.get(status.name)
        if seen is None:
            seen = self._seen[status.name] = _Seen(status.up, at, False, 0 if status.up else 1)
        elif seen.up != status.up:
            seen.since, seen.exact, seen.up = at, seen.probed, status.up
            seen.downs += 0 if status.up else 1
        seen.probed = True
        return replace(status, since=seen.since, since_exact=seen.exact, down_count=seen.downs)


# -- gathering --------------------------------------------------------------------------


def bridge_status(bridge: Bridge, queues: Sequence[str], *,
                  tracker: StateTracker | None = None) -> StatusReport:
    """Backends, spool and workers of ``bridge``. Never raises for a broker problem."""
    tracker = tracker or StateTracker(bridge.router.health())
    report = gather_status(list(bridge.backends.values()), queues,
                           source=bridge.settings.source, tracker=tracker)
    return replace(report, spool=spool_status(bridge.settings.spool),
                   workers=workers_status(bridge.settings.worker, bridge.plugins))


def gather_status(backends: Sequence[Backend], queues: Sequence[str], *,
                  source: str = "<code>", tracker: StateTracker | None = None) -> StatusReport:
    """Probe every backend in parallel and read the depth of ``queues`` on those that are up.

    Never raises for a broker problem: a failing backend is reported down with its error.
    """
    results: list[BackendStatus | None] = [None] * len(backends)

    def probe(index: int, backend: Backend) -> None:
        results[index] = backend_status(backend, queues)

    threads = [threading.Thread(target=probe, args=(index, backend), daemon=True,
                                name=f"queuebridge-status-{backend.name}")
               for index, backend in enumerate(backends)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for index, (thread, backend) in enumerate(zip(threads, backends, strict=True)):
        # Budgets count from the common start: the probes run at the same time.
        thread.join(max(0.0, start + _probe_budget(backend, len(queues)) - time.monotonic()))
        if results[index] is None:
            results[index] = _down(backend, "no answer within its timeout")
    now, tracker = time.time(), tracker or StateTracker()
    return StatusReport(source=source, queues=tuple(queues), checked_at=now, backends=tuple(
        tracker.observe(status, now) for status in results if status is not None))


def backend_status(backend: Backend, queues: Sequence[str]) -> BackendStatus:
    """Ping one backend, then read its queue depths. Never raises for a broker problem."""
    try:
        latency = backend.ping()
    except QueueBridgeError as exc:
        return _down(backend, str(exc))
    depths: dict[str, int | None] = {}
    for queue in queues:
        try:
            depths[queue] = backend.depth(queue)
        except QueueBridgeError:
            depths[queue] = None
    return BackendStatus(backend.name, backend.settings.type, backend.settings.safe_url,
                         up=True, latency=latency, depths=depths)


def spool_status(settings: SpoolSettings) -> SpoolStatus:
    """Count the jobs in the spool file; a missing file is an empty spool (not created)."""
    found = SpoolStatus(str(settings.path), settings.enabled, settings.max_jobs)
    if not settings.path.exists():
        return found
    try:
        spool = Spool(settings.path, settings.max_jobs)
        try:
            oldest = spool.list(limit=1)
            return replace(found, count=spool.count(),
                           oldest_at=oldest[0].spooled_at if oldest else None)
        finally:
            spool.close()
    except QueueBridgeError as exc:
        return replace(found, count=None, error=redact_text(str(exc)))


def workers_status(settings: WorkerSettings, plugins: PluginManager) -> WorkersStatus:
    """Read the heartbeats in ``[queuebridge.worker] state``; a missing SQLite file means
    no worker ever ran here (it is not created)."""
    location = settings.safe_state
    if url_scheme(settings.state) is None and not Path(settings.state).expanduser().exists():
        return WorkersStatus(location)
    try:
        state = open_worker_state(settings.state, plugins)
        try:
            return WorkersStatus(location, tuple(state.heartbeats.workers()))
        finally:
            state.close()
    except QueueBridgeError as exc:
        return WorkersStatus(location, error=redact_text(str(exc)))


def watch_status(produce: Callable[[], StatusReport], show: Callable[[StatusReport], None],
                 interval: float, *, wait: Callable[[float], object] | None = None
                 ) -> StatusReport:
    """Show a fresh report every ``interval`` seconds until Ctrl-C; return the last one.

    ``wait`` sleeps between refreshes (``time.sleep``, looked up at each call)."""
    report = produce()
    try:
        while True:
            show(report)
            (wait or time.sleep)(interval)
            report = produce()
    except KeyboardInterrupt:
        return report


def format_age(seconds: float) -> str:
    """A short duration: ``42s``, ``3m05s``, ``2h04m``, ``3d02h``."""
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def _down(backend: Backend, error: str) -> BackendStatus:
    # BackendError messages already start with the backend's name; give the others one.
    prefix = f"{backend.name}: "
    error = error if error.startswith(prefix) else prefix + error
    return BackendStatus(backend.name, backend.settings.type, backend.settings.safe_url,
                         up=False, error=redact_text(error))


def _probe_budget(backend: Backend, queue_count: int) -> float:
    # A ping may connect first; each depth is one more bounded operation.
    settings = backend.settings
    return settings.connect_timeout + settings.timeout * (1 + queue_count) + _MARGIN
