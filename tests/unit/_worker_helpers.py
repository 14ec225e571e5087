"""Building bridges of memory backends and running workers in a thread, for tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from queuebridge.backend import BackendSettings
from queuebridge.backends.memory import MemoryBackend
from queuebridge.bridge import Bridge
from queuebridge.worker import Worker, WorkerOptions

FAST: dict[str, Any] = {
    "poll_timeout": 0.05, "retry_backoff": 0.01, "retry_backoff_max": 0.05,
    "reconnect_backoff": 0.01, "reconnect_backoff_max": 0.05, "grace_period": 5.0,
    "state": None,
}


def memory_bridge(count: int = 2, **settings: Any) -> Bridge:
    """A Bridge over ``count`` independent memory backends named b0, b1, ..."""
    merged = {"timeout": 0.2, **settings}
    return Bridge([MemoryBackend(BackendSettings(name=f"b{i}", type="memory", **merged))
                   for i in range(count)])


def memory(bridge: Bridge, name: str) -> MemoryBackend:
    backend = bridge.backends[name]
    assert isinstance(backend, MemoryBackend)
    return backend


def leased(backend: MemoryBackend) -> int:
    """Jobs currently leased from ``backend`` (not acked)."""
    with backend._cond:
        return len(backend._leases)


def lease_expiries(backend: MemoryBackend) -> list[float]:
    """When each lease currently held on ``backend`` expires (monotonic)."""
    with backend._cond:
        return [lease.expires for lease in backend._leases.values()]


def dead(backend: MemoryBackend, queue: str = "default") -> list[str]:
    return [reason for _, reason in backend.dead_letters(queue)]


@dataclass
class Running:
    worker: Worker
    thread: threading.Thread
    result: list[int] = field(default_factory=list)

    def join(self, timeout: float = 10.0) -> int:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "worker did not exit in time"
        return self.result[0]


def start(bridge: Bridge, **options: Any) -> Running:
    worker = Worker(bridge, WorkerOptions(**{**FAST, **options}))
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(worker.run()), daemon=True)
    thread.start()
    return Running(worker, thread, result)


@contextmanager
def running(bridge: Bridge, **options: Any) -> Iterator[Running]:
    """Run a worker for the ``with`` block; stop it (graceful) and join on exit."""
    handle = start(bridge, **options)
    try:
        yield handle
    finally:
        handle.worker.stop()
        handle.join()


def burst(bridge: Bridge, **options: Any) -> Worker:
    """Run a burst worker to completion; assert it exited 0."""
    handle = start(bridge, burst=True, **options)
    assert handle.join() == 0
    return handle.worker
