"""Delays: between attempts of a failing job, and between polls of a dead broker."""

from __future__ import annotations

import random

__all__ = ["Reconnect", "retry_delay"]


def retry_delay(attempt: int, base: float, cap: float) -> float:
    """The delay before the attempt after ``attempt`` (1-based) failed.

    Exponential (``base * 2**(attempt-1)``, capped) with *equal* jitter: a random
    value in the upper half. Full jitter can pick ~0, retrying at once a job that just
    failed; the upper half keeps the growth while still spreading a retry storm.
    """
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 60))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


class Reconnect:
    """Capped exponential backoff with jitter for a consumer whose broker is down."""

    __slots__ = ("_base", "_cap", "_current")

    def __init__(self, base: float, cap: float) -> None:
        self._base = base
        self._cap = max(cap, base)
        self._current = base

    def next(self) -> float:
        """The next pause; each call doubles the following one, up to the cap."""
        delay = self._current
        self._current = min(self._cap, self._current * 2)
        return delay * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        """The broker answered: start from the base again next time."""
        self._current = self._base
