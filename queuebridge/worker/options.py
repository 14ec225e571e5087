"""Worker options (validated once, frozen) and the counters a worker exposes."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final

from queuebridge.errors import ConfigError
from queuebridge.settings import WorkerSettings

__all__ = ["POOLS", "WorkerOptions", "WorkerStats"]

POOLS: Final = ("threads", "processes")


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """How a :class:`~queuebridge.worker.Worker` runs. Every field has a default.

    Times are in seconds. Raises :class:`ConfigError` (naming the field) when a value
    is out of range.
    """

    queues: tuple[str, ...] = ("default",)
    """Queues to consume, in priority order."""
    concurrency: int = 8
    """Jobs run at once; also the bound on leased-but-unfinished jobs (no hoarding)."""
    burst: bool = False
    """Exit (code 0) once every queue on every reachable backend is empty."""
    pool: str = "threads"
    """``threads`` (soft timeouts) or ``processes`` (hard timeouts: the child is killed)."""
    poll_timeout: float = 1.0
    """How long one ``reserve`` waits for a job."""
    grace_period: float = 30.0
    """On stop, how long in-flight jobs may take before their leases are returned."""
    heartbeat_interval: float = 5.0
    name: str = ""
    """This worker's name in the worker registry; ``host:pid`` by default."""
    retry_backoff: float = 1.0
    """First retry delay; doubles per attempt (a task's own ``retry_backoff`` wins)."""
    retry_backoff_max: float = 300.0
    reconnect_backoff: float = 0.1
    """First pause after a broker failure; doubles (with jitter) while it stays down."""
    reconnect_backoff_max: float = 5.0
    recover_interval: float = 30.0
    """How often each consumer asks its backend to return orphaned leases."""
    burst_outage_wait: float = 60.0
    """In burst mode, how long a backend that fails mid-run is waited for before it
    is skipped (a backend already down at start is skipped at once)."""
    state: str | Path | None = field(default=".queuebridge/worker.sqlite3", repr=False)
    """Where dedup claims, checkpoints and heartbeats live: a SQLite file (WAL, shared
    by the workers of one host) or a URL a plugin handles (``redis://...`` with
    queuebridge-rq, shared by every host). ``None`` turns all three off."""
    app: str | None = None
    """The app as ``module:attr`` (a :class:`~queuebridge.Bridge`), imported by the
    children of ``pool="processes"``; defaults to the bridge's ``settings.app``."""
    dedup_ttl: float = 86_400.0
    """How long a finished job id is remembered (duplicates within it are skipped)."""

    def __post_init__(self) -> None:
        if not self.queues:
            raise ConfigError("worker.queues", "at least one queue is required")
        if self.concurrency < 1:
            raise ConfigError("worker.concurrency", f"must be >= 1, got {self.concurrency}")
        if self.pool not in POOLS:
            raise ConfigError("worker.pool", f"must be one of {', '.join(POOLS)}, "
                                             f"got {self.pool!r}")
        for name in ("poll_timeout", "heartbeat_interval", "reconnect_backoff",
                     "recover_interval", "dedup_ttl"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"worker.{name}", f"must be > 0, got {getattr(self, name)}")
        for name in ("grace_period", "retry_backoff", "retry_backoff_max", "burst_outage_wait"):
            if getattr(self, name) < 0:
                raise ConfigError(f"worker.{name}", f"must be >= 0, got {getattr(self, name)}")

    @classmethod
    def from_settings(cls, settings: WorkerSettings, **overrides: Any) -> WorkerOptions:
        """Options from ``[queuebridge.worker]``, with keyword ``overrides`` on top."""
        ours = {f.name for f in fields(cls)}
        values = {f.name: getattr(settings, f.name) for f in fields(settings) if f.name in ours}
        values.update(overrides)
        return cls(**values)


@dataclass(frozen=True, slots=True)
class WorkerStats:
    """A snapshot of a worker's counters since it started."""

    processed: int = 0
    """Attempts run (the task function was called)."""
    succeeded: int = 0
    failed: int = 0
    """Attempts that raised (or overran their timeout)."""
    retried: int = 0
    dead_lettered: int = 0
    """Includes unknown tasks and malformed messages."""
    duplicates: int = 0
    returned: int = 0
    """Leases handed back unfinished: on stop, or a job that arrived before it was due."""


class Counters:
    """Thread-safe mutable counters behind :class:`WorkerStats`."""

    __slots__ = ("_lock", "_values")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys((f.name for f in fields(WorkerStats)), 0)

    def add(self, *names: str) -> None:
        """Add one to each named counter."""
        with self._lock:
            for name in names:
                self._values[name] += 1

    def snapshot(self) -> WorkerStats:
        """The current values."""
        with self._lock:
            return WorkerStats(**self._values)
