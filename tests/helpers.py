"""Small helpers shared by the test suites.

Tests wait for conditions, never for fixed sleeps: :func:`wait_until` polls a
predicate until it holds or a deadline passes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from queuebridge.backend import BackendSettings
from queuebridge.backends.memory import MemoryBackend
from queuebridge.bridge import Bridge
from queuebridge.envelope import Envelope
from queuebridge.events import BackendDown, BackendUp, Failback, Failover, TransitionEvent
from queuebridge.hookspecs import hookimpl
from queuebridge.plugins import PluginManager
from queuebridge.settings import RouterSettings, SpoolSettings

__all__ = ["Recorder", "build_bridge", "wait_until"]


def wait_until(predicate: Callable[[], object], timeout: float = 5.0, *,
               interval: float = 0.005, message: str = "") -> None:
    """Poll ``predicate`` until it returns a truthy value; raise ``AssertionError`` if it
    still does not after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(message or f"condition not met within {timeout}s: {predicate}")
        time.sleep(interval)


class Recorder:
    """A plugin that records routing transitions and enqueues, for assertions.

    Register it with ``PluginManager(entry_points=False, plugins=[recorder])``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[TransitionEvent] = []
        self.enqueued: list[tuple[str, str]] = []
        """``(job id, backend)`` per ``job_enqueued`` call."""

    def kinds(self) -> list[str]:
        """The kinds of the recorded transitions, in order."""
        with self._lock:
            return [event.kind for event in self.events]

    def of(self, kind: str) -> list[TransitionEvent]:
        """The recorded transitions of one kind (``backend_down``, ``failover`` ...)."""
        with self._lock:
            return [event for event in self.events if event.kind == kind]

    def _add(self, event: TransitionEvent) -> None:
        with self._lock:
            self.events.append(event)

    @hookimpl
    def queuebridge_backend_down(self, event: BackendDown) -> None:
        self._add(event)

    @hookimpl
    def queuebridge_backend_up(self, event: BackendUp) -> None:
        self._add(event)

    @hookimpl
    def queuebridge_failover(self, event: Failover) -> None:
        self._add(event)

    @hookimpl
    def queuebridge_failback(self, event: Failback) -> None:
        self._add(event)

    @hookimpl
    def queuebridge_job_enqueued(self, envelope: Envelope, backend: str) -> None:
        with self._lock:
            self.enqueued.append((envelope.id, backend))


def build_bridge(names: Sequence[str] = ("primary", "alternate"), *, timeout: float = 0.3,
                 router: RouterSettings | None = None, spool: SpoolSettings | None = None,
                 backend_class: type[MemoryBackend] = MemoryBackend,
                 ) -> tuple[Bridge, list[MemoryBackend], Recorder]:
    """A Bridge over fresh memory backends (operation ``timeout`` each) with a
    :class:`Recorder` registered. The caller closes the bridge."""
    backends = [backend_class(BackendSettings(name=name, type="memory", timeout=timeout))
                for name in names]
    recorder = Recorder()
    bridge = Bridge(backends, router=router, spool=spool,
                    plugins=PluginManager(entry_points=False, plugins=[recorder]))
    return bridge, backends, recorder
