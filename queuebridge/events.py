"""Events the router and worker emit, delivered to plugins through the hooks.

Transition events (:class:`BackendDown`, :class:`BackendUp`, :class:`Failover`,
:class:`Failback`) are emitted once per transition, never once per job.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["BackendDown", "BackendUp", "Failback", "Failover", "TransitionEvent"]


@dataclass(frozen=True, slots=True)
class TransitionEvent:
    """Base of the routing transitions. ``at`` is a Unix timestamp."""

    at: float

    @property
    def kind(self) -> str:
        """A short stable name: ``backend_down``, ``failover`` ..."""
        return _KINDS[type(self)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, for log lines and webhooks."""
        return {"event": self.kind, **dataclasses.asdict(self)}


@dataclass(frozen=True, slots=True)
class BackendDown(TransitionEvent):
    """A backend stopped answering; the circuit opened."""

    backend: str
    reason: str


@dataclass(frozen=True, slots=True)
class BackendUp(TransitionEvent):
    """A backend answered enough consecutive probes to be trusted again."""

    backend: str
    downtime: float = 0.0
    """Seconds it was down."""


@dataclass(frozen=True, slots=True)
class Failover(TransitionEvent):
    """New jobs now go to ``to_backend`` (``"spool"`` when nothing is up)."""

    from_backend: str
    to_backend: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Failback(TransitionEvent):
    """A more preferred backend is back; new jobs go to ``to_backend`` again."""

    from_backend: str
    to_backend: str


_KINDS: dict[type[TransitionEvent], str] = {
    BackendDown: "backend_down",
    BackendUp: "backend_up",
    Failover: "failover",
    Failback: "failback",
}
