"""Transition hooks run on their own thread: a slow plugin never spends a caller's deadline."""

from __future__ import annotations

import threading
import time

from queuebridge.backend import BackendSettings
from queuebridge.backends.memory import MemoryBackend
from queuebridge.bridge import Bridge
from queuebridge.envelope import Envelope
from queuebridge.events import BackendDown
from queuebridge.hookspecs import hookimpl
from queuebridge.plugins import PluginManager
from queuebridge.settings import RouterSettings


class SlowPager:
    """A notifier that takes 3 s to page someone."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.paged: list[str] = []

    @hookimpl
    def queuebridge_backend_down(self, event: BackendDown) -> None:
        self.release.wait(3)
        self.paged.append(event.backend)


def test_a_slow_transition_hook_does_not_hold_the_enqueue() -> None:
    pager = SlowPager()
    backends = [MemoryBackend(BackendSettings(name=n, type="memory", timeout=0.2))
                for n in ("primary", "alternate")]
    bridge = Bridge(backends, router=RouterSettings(deadline=1.0),
                    plugins=PluginManager(entry_points=False, plugins=[pager]))
    try:
        backends[0].break_()
        start = time.monotonic()
        [placed] = bridge.submit([Envelope.create("t.x")])
        elapsed = time.monotonic() - start
        assert placed.backend == "alternate"
        assert elapsed < 0.5, f"the enqueue waited {elapsed:.2f}s for a plugin hook"
        assert pager.paged == []  # still paging, on the relay thread
        pager.release.set()
        assert bridge.router.flush_events(timeout=5)
        assert pager.paged == ["primary"]
    finally:
        pager.release.set()
        bridge.close()
