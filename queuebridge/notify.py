"""The built-in logging notifier: one structured log line per routing transition.

Lines go to the ``queuebridge.events`` logger at WARNING (down, failover) or INFO
(up, failback): a human summary (backend, reason; the outage's duration on recovery)
followed by the event as JSON, so log pipelines can parse it. The same dict is on the
record as ``record.queuebridge_event`` for structured (JSON) log handlers.
Turn it off with ``[queuebridge.notify] log_transitions = false``.
"""

from __future__ import annotations

import json
import logging

from queuebridge.events import BackendDown, BackendUp, Failback, Failover, TransitionEvent
from queuebridge.hookspecs import hookimpl

__all__ = ["log_transition"]

log = logging.getLogger("queuebridge.events")


def log_transition(event: TransitionEvent, level: int) -> None:
    """Log ``event`` as one line: a human summary followed by its JSON form."""
    fields = event.to_dict()
    log.log(level, "%s %s", _summary(event), json.dumps(fields, sort_keys=True),
            extra={"queuebridge_event": fields})


def _summary(event: TransitionEvent) -> str:
    if isinstance(event, BackendDown):
        return f"backend {event.backend!r} is DOWN: {event.reason}"
    if isinstance(event, BackendUp):
        return f"backend {event.backend!r} is UP again after {event.downtime:.1f}s"
    if isinstance(event, Failover):
        return f"FAILOVER {event.from_backend!r} -> {event.to_backend!r}: {event.reason}"
    if isinstance(event, Failback):
        return f"FAILBACK {event.from_backend!r} -> {event.to_backend!r}"
    return event.kind


@hookimpl
def queuebridge_backend_down(event: BackendDown) -> None:
    """Log the transition."""
    log_transition(event, logging.WARNING)


@hookimpl
def queuebridge_backend_up(event: BackendUp) -> None:
    """Log the transition."""
    log_transition(event, logging.INFO)


@hookimpl
def queuebridge_failover(event: Failover) -> None:
    """Log the transition."""
    log_transition(event, logging.WARNING)


@hookimpl
def queuebridge_failback(event: Failback) -> None:
    """Log the transition."""
    log_transition(event, logging.INFO)
