"""Routing jobs to the best live backend. (Minimal version; health-aware router to come.)"""

from __future__ import annotations

from collections.abc import Sequence

from queuebridge.backend import Backend
from queuebridge.envelope import Envelope
from queuebridge.errors import BackendUnavailable, NoBackendAvailable
from queuebridge.plugins import PluginManager
from queuebridge.settings import RouterSettings, SpoolSettings

__all__ = ["Router"]


class Router:
    """Sends each batch to the first backend that accepts it, in configured order."""

    def __init__(self, backends: Sequence[Backend], settings: RouterSettings,
                 plugins: PluginManager, *, spool: SpoolSettings | None = None) -> None:
        self.backends = list(backends)
        self.settings = settings
        self.plugins = plugins
        self.spool_settings = spool

    def send_many(self, envelopes: Sequence[Envelope]) -> list[str]:
        """Send ``envelopes``; return the name of the backend that accepted each."""
        errors = []
        for backend in self.backends:
            try:
                backend.send_many(envelopes)
            except BackendUnavailable as exc:
                errors.append(str(exc))
                continue
            for envelope in envelopes:
                self.plugins.job_enqueued(envelope, backend.name)
            return [backend.name] * len(envelopes)
        raise NoBackendAvailable("; ".join(errors))

    def close(self) -> None:
        """Stop background threads."""
