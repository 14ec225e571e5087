"""Polling helper for tests: wait for a condition instead of sleeping."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], object], timeout: float = 5.0,
               interval: float = 0.005, message: str = "") -> None:
    """Return once ``predicate()`` is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for "
                                 f"{message or getattr(predicate, '__name__', 'condition')}")
        time.sleep(interval)
