"""A point-in-time health report of a Bridge's backends (what ``queuebridge status`` shows).

Each backend is pinged in its own thread, so one hung broker costs its own timeout and
not the sum of all of them; a backend that does not answer within
``timeout + connect_timeout`` (plus a margin) is reported down even if its adapter
breaks the contract and hangs. Queue depths are read only from backends that are up.

The report is built to grow: new sections (spool depth, live workers) become new
fields of :class:`StatusReport` with defaults, and new keys of :meth:`StatusReport.to_dict`.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from queuebridge.backend import Backend
from queuebridge.errors import QueueBridgeError
from queuebridge.redact import redact_text

__all__ = ["BackendStatus", "Overall", "StatusReport", "backend_status", "gather_status"]

_MARGIN: Final = 1.0
"""Seconds granted beyond a backend's own timeouts before its probe is abandoned."""


class Overall(enum.Enum):
    """The state of the whole set of backends; ``exit_code`` is the CLI's exit status."""

    UP = ("up", 0)
    DEGRADED = ("degraded", 1)
    DOWN = ("down", 2)

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

    @property
    def latency_ms(self) -> float | None:
        """The ping latency in milliseconds, rounded to 0.1 ms."""
        return None if self.latency is None else round(self.latency * 1000, 1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name, "type": self.type, "url": self.url,
            "state": "up" if self.up else "down", "latency_ms": self.latency_ms,
            "depths": dict(self.depths), "error": self.error or None,
        }


@dataclass(frozen=True, slots=True)
class StatusReport:
    """Every backend's status, in configured (priority) order."""

    source: str
    """Where the configuration came from (a file, ``<default>`` or ``<code>``)."""
    queues: tuple[str, ...]
    backends: tuple[BackendStatus, ...]
    checked_at: float = field(default_factory=time.time)

    @property
    def overall(self) -> Overall:
        """UP when every backend answered, DOWN when none did, else DEGRADED."""
        up = sum(1 for backend in self.backends if backend.up)
        if up == len(self.backends):
            return Overall.UP
        return Overall.DOWN if up == 0 else Overall.DEGRADED

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"state": ..., "backends": [...], ...}``."""
        return {
            "state": self.overall.label,
            "source": self.source,
            "checked_at": self.checked_at,
            "queues": list(self.queues),
            "backends": [backend.to_dict() for backend in self.backends],
        }


def gather_status(backends: Sequence[Backend], queues: Sequence[str], *,
                  source: str = "<code>") -> StatusReport:
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
    return StatusReport(source=source, queues=tuple(queues),
                        backends=tuple(status for status in results if status is not None))


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
