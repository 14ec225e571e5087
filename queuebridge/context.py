"""The running job's context, readable from inside a task.

    from queuebridge.context import current_job

    @bridge.task(retries=3, timeout=60)
    def crunch(path: str) -> None:
        job = current_job()
        start = (job.last_checkpoint() or {}).get("row", 0)
        for row in rows(path, start):
            if job.expired:                      # soft timeout: stop cleanly
                raise JobTimeout(f"stopped at row {row}")
            ...
            job.checkpoint({"row": row})

The worker sets the context for the duration of one attempt (a :mod:`contextvars`
variable, so it is per thread and never leaks into the next job).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

from queuebridge.errors import JobTimeout, QueueBridgeError

__all__ = ["CheckpointAccess", "JobContext", "NoJobContext", "current_job", "job_context"]


class NoJobContext(QueueBridgeError, LookupError):
    """:func:`current_job` was called outside a job run by a worker."""


class CheckpointAccess(Protocol):
    """Where a job's checkpoints live (the worker passes its checkpoint store)."""

    def save(self, job_id: str, state: Any) -> None:
        """Persist ``state`` (JSON-serialisable) for ``job_id``, replacing the last one."""

    def load(self, job_id: str) -> Any | None:
        """The last state saved for ``job_id``, or ``None``."""


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a running task may know about its own job. Immutable.

    ``deadline`` is the wall-clock time (``time.time()``) at which the task's soft
    timeout passes, or ``None`` when the task has no timeout.
    """

    job_id: str
    attempt: int
    max_retries: int
    backend: str
    queue: str
    task: str
    deadline: float | None = None
    checkpoints: CheckpointAccess | None = field(default=None, repr=False, compare=False)

    @property
    def retries_left(self) -> int:
        """How many more attempts may follow this one."""
        return max(0, self.max_retries + 1 - self.attempt)

    @property
    def remaining(self) -> float | None:
        """Seconds until the soft timeout (negative once passed), or ``None``."""
        return None if self.deadline is None else self.deadline - time.time()

    @property
    def expired(self) -> bool:
        """True once the soft timeout has passed. Long tasks should poll it and stop."""
        return self.deadline is not None and time.time() >= self.deadline

    def check_timeout(self) -> None:
        """Raise :class:`~queuebridge.errors.JobTimeout` if the soft timeout has passed."""
        if self.expired:
            raise JobTimeout(f"job {self.job_id}: soft timeout passed")

    def checkpoint(self, state: Any) -> None:
        """Save JSON-serialisable ``state``; a later attempt of this job (a retry, or a
        redelivery after a crash) reads it with :meth:`last_checkpoint`. Cleared when
        the job succeeds. Raises :class:`QueueBridgeError` when no store is configured."""
        self._store().save(self.job_id, state)

    def last_checkpoint(self) -> Any | None:
        """The state saved by the last :meth:`checkpoint` of this job, or ``None``."""
        return self._store().load(self.job_id)

    def _store(self) -> CheckpointAccess:
        if self.checkpoints is None:
            raise QueueBridgeError(
                f"job {self.job_id}: checkpoints need a state store "
                "(WorkerOptions.state, [queuebridge.worker] state)"
            )
        return self.checkpoints


_CURRENT: ContextVar[JobContext | None] = ContextVar("queuebridge_job", default=None)


def current_job() -> JobContext:
    """The context of the job running in this thread. Raises :class:`NoJobContext`
    when called outside a task run by a worker (for example when calling the task
    function directly)."""
    ctx = _CURRENT.get()
    if ctx is None:
        raise NoJobContext(
            "current_job() called outside a running job: only code run by a "
            "queuebridge worker has a job context"
        )
    return ctx


@contextmanager
def job_context(ctx: JobContext) -> Iterator[JobContext]:
    """Make ``ctx`` the current job for the ``with`` block (used by the worker)."""
    token = _CURRENT.set(ctx)
    try:
        yield ctx
    finally:
        _CURRENT.reset(token)
