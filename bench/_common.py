"""Helpers shared by the benchmarks."""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from queuebridge.drill.servers import RedisProcess

__all__ = ["fresh_queue", "private_redis", "timed"]


def timed(action: Callable[[], object]) -> float:
    """Seconds ``action()`` took (wall clock)."""
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def fresh_queue(kind: str) -> str:
    """A queue name no earlier run used."""
    return f"bench-{kind}-{uuid.uuid4().hex[:8]}"


@contextmanager
def private_redis() -> Iterator[str]:
    """A throwaway redis-server without persistence on a free port; yields its URL."""
    with tempfile.TemporaryDirectory() as workdir:
        server = RedisProcess(Path(workdir), durable=False)
        server.start()
        try:
            yield server.url
        finally:
            server.stop()
