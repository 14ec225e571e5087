"""Validated, frozen settings objects. :mod:`queuebridge.config` builds them from TOML;
code (and tests) may build them directly."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from queuebridge.backend import BackendSettings
from queuebridge.redact import redact_url

__all__ = ["RouterSettings", "Settings", "SpoolSettings", "WorkerSettings"]


@dataclass(frozen=True, slots=True)
class RouterSettings:
    """``[queuebridge.router]``: how jobs are routed between backends."""

    deadline: float = 5.0
    """Total seconds an enqueue may take, failovers included."""
    probe_interval: float = 0.5
    """First delay between probes of a down backend; doubles up to ``probe_max_interval``."""
    probe_max_interval: float = 5.0
    probe_jitter: float = 0.2
    """Fraction of random jitter added to each probe delay."""
    recovery_probes: int = 3
    """Consecutive good probes before a down backend is trusted again (hysteresis)."""
    failure_threshold: int = 1
    """Consecutive failed sends that open the circuit (1: the first failure)."""
    error_threshold: int = 3
    """Consecutive failed sends that open the circuit when the failures are errors other
    than ``BackendUnavailable`` (the broker answered but refused the send)."""


@dataclass(frozen=True, slots=True)
class SpoolSettings:
    """``[queuebridge.spool]``: the local durable buffer used when every backend is down."""

    enabled: bool = True
    path: Path = Path(".queuebridge/spool.sqlite3")
    max_jobs: int = 100_000
    drain_batch: int = 100
    drain_on_start: bool = True
    """Replay rows left by an earlier process as soon as a Bridge starts. Read-only
    commands (``check``, ``status``) turn it off: looking must not send."""


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """``[queuebridge.worker]``: defaults for ``queuebridge worker``."""

    queues: tuple[str, ...] = ("default",)
    concurrency: int = 8
    pool: str = "threads"
    grace_period: float = 30.0
    heartbeat_interval: float = 5.0
    poll_timeout: float = 1.0
    retry_backoff: float = 1.0
    """First retry delay in seconds; doubles per attempt (a task's own setting wins)."""
    retry_backoff_max: float = 300.0
    dedup_ttl: float = 86_400.0
    """Seconds a finished job id is remembered; a duplicate within it is skipped."""
    state: str = field(default=".queuebridge/worker.sqlite3", repr=False)
    """Where dedup claims, heartbeats and checkpoints live: a SQLite file path, or a
    URL a plugin handles (``redis://...`` with queuebridge-rq). May hold a password:
    show it only through :attr:`safe_state`."""

    @property
    def safe_state(self) -> str:
        """``state`` with any password replaced by ``***``."""
        return redact_url(self.state)


@dataclass(frozen=True, slots=True)
class NotifySettings:
    """``[queuebridge.notify]``: who hears about routing transitions (docs/notifications.md)."""

    webhook_url: str = ""
    """An ``http(s)://`` URL to POST each transition to as JSON; empty: no webhook."""
    webhook_timeout: float = 5.0
    """Seconds one POST may take."""
    webhook_retries: int = 3
    """Further attempts after a failed POST, with exponential backoff."""
    webhook_headers: dict[str, str] = field(default_factory=dict)
    """Extra request headers (``Authorization = "Bearer ${TOKEN}"``); values never shown."""
    log_transitions: bool = True
    """Log one line per transition (the built-in logging notifier)."""

    def __repr__(self) -> str:
        # Header values and URL credentials are secrets: show names and a redacted URL.
        return (f"NotifySettings(webhook_url={redact_url(self.webhook_url)!r}, "
                f"webhook_timeout={self.webhook_timeout!r}, "
                f"webhook_retries={self.webhook_retries!r}, "
                f"webhook_headers={sorted(self.webhook_headers)!r}, "
                f"log_transitions={self.log_transitions!r})")


@dataclass(frozen=True, slots=True)
class Settings:
    """The whole validated configuration."""

    backends: tuple[BackendSettings, ...]
    app: str | None = None
    router: RouterSettings = field(default_factory=RouterSettings)
    spool: SpoolSettings = field(default_factory=SpoolSettings)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    notify: NotifySettings = field(default_factory=NotifySettings)
    source: str = "<code>"
    """Where the settings came from: a file path, or ``<default>`` / ``<code>``."""
