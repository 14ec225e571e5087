"""Translate redis-py's exceptions into queuebridge's tree, at the call site.

``ConnectionError`` (which covers ``BusyLoadingError``, ``AuthenticationError`` and
Sentinel's ``MasterNotFoundError``), ``TimeoutError``, ``ReadOnlyError`` (a replica
left behind by a failover) and ``OSError`` mean "this broker cannot take work right
now": :class:`BackendUnavailable`, so the router fails over. Other Redis errors
are :class:`BackendError`. Messages are redacted: a URL with a password never leaks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis.exceptions as rex

from queuebridge.errors import BackendError, BackendUnavailable
from queuebridge.redact import redact_text

__all__ = ["translated"]

_UNAVAILABLE = (rex.ConnectionError, rex.TimeoutError, rex.ReadOnlyError, rex.TryAgainError,
                OSError)


@contextmanager
def translated(backend: str, operation: str) -> Iterator[None]:
    """Run a block of Redis calls; re-raise driver errors as queuebridge errors."""
    try:
        yield
    except _UNAVAILABLE as exc:
        raise BackendUnavailable(_message(operation, exc), backend=backend) from exc
    except rex.RedisError as exc:
        raise BackendError(_message(operation, exc), backend=backend) from exc


def _message(operation: str, exc: BaseException) -> str:
    detail = str(exc) or "no detail"
    return redact_text(f"{operation} failed: {type(exc).__name__}: {detail}")
