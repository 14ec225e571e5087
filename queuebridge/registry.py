"""Registered tasks: the only code a worker will run.

A task is registered under a stable name (default ``module.qualname``). Workers look
names up here and never import anything named by a message.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final, Generic, ParamSpec, TypeVar

from queuebridge.envelope import Envelope, validate_queue_name
from queuebridge.errors import TaskError, UnknownTaskError

if TYPE_CHECKING:
    from queuebridge.bridge import JobRef

__all__ = ["JobOptions", "Task", "TaskRegistry"]

P = ParamSpec("P")
R = TypeVar("R")
_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.:\-]{0,199}")


class _Enqueuer:
    """What a Task needs from its Bridge (kept minimal to avoid an import cycle)."""

    def _submit(self, envelopes: Sequence[Envelope]) -> list[JobRef]:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class JobOptions:
    """Per-job options, kept apart from the task's own arguments.

    ``None`` means "use the task's default".
    """

    queue: str | None = None
    delay: float | None = None
    """Seconds before the job may run."""
    job_id: str | None = None
    """Your own id (an idempotency key); a new one is generated otherwise."""
    retries: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.delay is not None and self.delay < 0:
            raise TaskError(f"delay must be >= 0 seconds, got {self.delay}")
        if self.retries is not None and self.retries < 0:
            raise TaskError(f"retries must be >= 0, got {self.retries}")


class Task(Generic[P, R]):
    """A registered function. Call it directly to run it in-process; use
    :meth:`enqueue` to run it on a worker."""

    def __init__(
        self,
        func: Any,
        *,
        name: str,
        queue: str = "default",
        retries: int = 0,
        timeout: float | None = None,
        bridge: _Enqueuer,
        retry_backoff: float | None = None,
        retry_backoff_max: float | None = None,
    ) -> None:
        if not _NAME_RE.fullmatch(name):
            raise TaskError(f"invalid task name {name!r}")
        if retries < 0:
            raise TaskError(f"task {name!r}: retries must be >= 0, got {retries}")
        if timeout is not None and timeout <= 0:
            raise TaskError(f"task {name!r}: timeout must be > 0 seconds, got {timeout}")
        self.func = func
        self.name = name
        self.queue = validate_queue_name(queue)
        self.retries = retries
        self.timeout = timeout
        self.retry_backoff = retry_backoff
        """First retry delay in seconds (doubles per attempt); ``None``: the worker's."""
        self.retry_backoff_max = retry_backoff_max
        """Cap on the retry delay; ``None``: the worker's."""
        self._bridge = bridge
        functools.update_wrapper(self, func)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        result: R = self.func(*args, **kwargs)
        return result

    def __repr__(self) -> str:
        return f"<Task {self.name!r} queue={self.queue!r} retries={self.retries}>"

    def job(self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None,
            options: JobOptions | None = None) -> Envelope:
        """Build (but do not send) the envelope for one call."""
        opts = options or JobOptions()
        return Envelope.create(
            self.name,
            args,
            kwargs,
            queue=opts.queue or self.queue,
            job_id=opts.job_id,
            max_retries=self.retries if opts.retries is None else opts.retries,
            delay=opts.delay,
            headers=opts.headers,
        )

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> JobRef:
        """Send one job; return its reference (id and the backend that accepted it)."""
        return self._bridge._submit([self.job(args, kwargs)])[0]

    def enqueue_many(self, calls: Iterable[Sequence[Any] | tuple[Sequence[Any], Mapping[str, Any]]]
                     ) -> list[JobRef]:
        """Send many jobs in batches. Each call is a tuple of positional arguments, or an
        ``(args, kwargs)`` pair when it holds exactly a sequence and a mapping."""
        envelopes = []
        for call in calls:
            if (isinstance(call, tuple) and len(call) == 2
                    and isinstance(call[0], Sequence) and isinstance(call[1], Mapping)):
                envelopes.append(self.job(call[0], call[1]))
            else:
                envelopes.append(self.job(tuple(call)))
        return self._bridge._submit(envelopes)

    def with_options(self, **options: Any) -> BoundTask[P, R]:
        """Job options for the next enqueue: ``queue``, ``delay``, ``job_id``,
        ``retries``, ``headers``. ``task.with_options(delay=30).enqueue(x)``."""
        return BoundTask(self, JobOptions(**options))


class BoundTask(Generic[P, R]):
    """A task with job options fixed, ready to enqueue."""

    __slots__ = ("_options", "_task")

    def __init__(self, task: Task[P, R], options: JobOptions) -> None:
        self._task = task
        self._options = options

    def with_options(self, **options: Any) -> BoundTask[P, R]:
        """Override more options."""
        return BoundTask(self._task, replace(self._options, **options))

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> JobRef:
        """Send one job with the bound options."""
        envelope = self._task.job(args, kwargs, self._options)
        return self._task._bridge._submit([envelope])[0]


class TaskRegistry:
    """Name -> :class:`Task`. One per Bridge; never global."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task[Any, Any]] = {}
        self._lock = threading.Lock()

    def add(self, task: Task[Any, Any]) -> None:
        """Register ``task``; a second, different function under one name is an error."""
        with self._lock:
            existing = self._tasks.get(task.name)
            if existing is not None and existing.func is not task.func:
                raise TaskError(
                    f"task name {task.name!r} is already registered to {existing.func!r}"
                )
            self._tasks[task.name] = task

    def get(self, name: str) -> Task[Any, Any]:
        """The task registered as ``name``; raises :class:`UnknownTaskError`."""
        task = self._tasks.get(name)
        if task is None:
            raise UnknownTaskError(name, list(self._tasks))
        return task

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._tasks)

    def queues(self) -> list[str]:
        """Every queue a registered task defaults to, sorted."""
        return sorted({task.queue for task in self._tasks.values()})
