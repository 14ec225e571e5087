"""The wire envelope: one versioned JSON object per job.

The ``id`` is assigned once, at enqueue, and never changes: not on retry, not on
failover, not on spool replay. That rule is what makes duplicates detectable.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from queuebridge.errors import EnvelopeError, SerializationError

__all__ = [
    "ENVELOPE_VERSION",
    "Envelope",
    "new_job_id",
    "validate_job_id",
    "validate_queue_name",
]

ENVELOPE_VERSION: Final = 1
_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
_QUEUE_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_FIELDS: Final = frozenset(
    {"v", "id", "task", "args", "kwargs", "queue", "attempt", "max_retries",
     "created_at", "not_before", "headers"}
)


def new_job_id() -> str:
    """Return a fresh job id (32 hex characters)."""
    return uuid.uuid4().hex


def validate_job_id(job_id: str) -> str:
    """Return ``job_id`` if it is safe for every broker (and as a file name), else raise
    :class:`~queuebridge.errors.TaskError`-derived ``SerializationError``."""
    if not isinstance(job_id, str) or not _ID_RE.fullmatch(job_id):
        raise SerializationError(
            f"invalid job id {job_id!r}: use 1-128 characters from A-Z a-z 0-9 _ . -, "
            "starting with a letter or digit"
        )
    return job_id


def validate_queue_name(queue: str) -> str:
    """Return ``queue`` if it is a valid queue name, else raise ``SerializationError``."""
    if not isinstance(queue, str) or not _QUEUE_RE.fullmatch(queue):
        raise SerializationError(
            f"invalid queue name {queue!r}: use 1-64 characters from A-Z a-z 0-9 _ . -"
        )
    return queue


@dataclass(frozen=True, slots=True)
class Envelope:
    """One job as it travels between producer, brokers, spool and worker.

    Instances are immutable; use :meth:`next_attempt` to build a retry.
    """

    id: str
    task: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    queue: str = "default"
    attempt: int = 1
    max_retries: int = 0
    created_at: float = 0.0
    not_before: float | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        task: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        queue: str = "default",
        job_id: str | None = None,
        max_retries: int = 0,
        delay: float | None = None,
        headers: Mapping[str, str] | None = None,
        now: float | None = None,
    ) -> Envelope:
        """Build a new envelope, checking that every argument is JSON-serialisable.

        Raises :class:`SerializationError` naming the task and the argument that failed.
        """
        now = time.time() if now is None else now
        env = cls(
            id=validate_job_id(job_id) if job_id is not None else new_job_id(),
            task=task,
            args=tuple(args),
            kwargs=dict(kwargs or {}),
            queue=validate_queue_name(queue),
            attempt=1,
            max_retries=max_retries,
            created_at=now,
            not_before=now + delay if delay else None,
            headers=dict(headers or {}),
        )
        _check_serialisable(env)
        return env

    @property
    def is_delayed(self) -> bool:
        """True when the job must not run before ``not_before``."""
        return self.not_before is not None and self.not_before > time.time()

    @property
    def retries_left(self) -> int:
        """How many more attempts may follow this one."""
        return max(0, self.max_retries + 1 - self.attempt)

    def next_attempt(self, delay: float = 0.0, *, now: float | None = None) -> Envelope:
        """The same job (same id) for its next attempt, not to run before ``delay`` seconds."""
        now = time.time() if now is None else now
        return replace(self, attempt=self.attempt + 1, not_before=now + delay if delay else None)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready mapping of this envelope."""
        return {
            "v": ENVELOPE_VERSION,
            "id": self.id,
            "task": self.task,
            "args": list(self.args),
            "kwargs": dict(self.kwargs),
            "queue": self.queue,
            "attempt": self.attempt,
            "max_retries": self.max_retries,
            "created_at": self.created_at,
            "not_before": self.not_before,
            "headers": dict(self.headers),
        }

    def encode(self) -> bytes:
        """Serialise to compact UTF-8 JSON."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def decode(cls, data: bytes | str) -> Envelope:
        """Parse a wire message. Raises :class:`EnvelopeError` saying what is wrong."""
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise EnvelopeError(f"message is not valid JSON: {exc}") from exc
        return cls.from_dict(obj)

    @classmethod
    def from_dict(cls, obj: object) -> Envelope:
        """Validate a decoded JSON object. Raises :class:`EnvelopeError`."""
        if not isinstance(obj, dict):
            raise EnvelopeError(f"message must be a JSON object, got {type(obj).__name__}")
        version = obj.get("v")
        if version != ENVELOPE_VERSION:
            raise EnvelopeError(f"unsupported envelope version {version!r}")
        unknown = set(obj) - _FIELDS
        if unknown:
            raise EnvelopeError(f"unknown envelope fields: {', '.join(sorted(unknown))}")
        job_id = _field(obj, "id", str)
        try:
            validate_job_id(job_id)
            validate_queue_name(_field(obj, "queue", str))
        except SerializationError as exc:
            raise EnvelopeError(str(exc)) from exc
        not_before = obj.get("not_before")
        if not_before is not None and not isinstance(not_before, int | float):
            raise EnvelopeError(f"job {job_id}: field 'not_before' must be a number or null")
        headers = _field(obj, "headers", dict, job_id)
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
            raise EnvelopeError(f"job {job_id}: headers must map strings to strings")
        return cls(
            id=job_id,
            task=_field(obj, "task", str, job_id),
            args=tuple(_field(obj, "args", list, job_id)),
            kwargs=_field(obj, "kwargs", dict, job_id),
            queue=obj["queue"],
            attempt=_field(obj, "attempt", int, job_id),
            max_retries=_field(obj, "max_retries", int, job_id),
            created_at=float(_field(obj, "created_at", (int, float), job_id)),
            not_before=float(not_before) if not_before is not None else None,
            headers=headers,
        )

    def __repr__(self) -> str:
        return (
            f"Envelope(id={self.id!r}, task={self.task!r}, queue={self.queue!r}, "
            f"attempt={self.attempt}/{self.max_retries + 1})"
        )


def _field(obj: dict[str, Any], name: str, kind: Any, job_id: str = "") -> Any:
    if name not in obj:
        raise EnvelopeError(f"{'job ' + job_id + ': ' if job_id else ''}missing field {name!r}")
    value = obj[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        expected = kind.__name__ if isinstance(kind, type) else "number"
        prefix = f"job {job_id}: " if job_id else ""
        raise EnvelopeError(f"{prefix}field {name!r} must be {expected}")
    return value


def _check_serialisable(env: Envelope) -> None:
    try:
        # One pass on the hot path; only a failure pays for finding the culprit.
        json.dumps([env.args, env.kwargs], allow_nan=False)
    except (TypeError, ValueError):
        pass
    else:
        if all(isinstance(key, str) for key in env.kwargs) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in env.headers.items()
        ):
            return
    for index, value in enumerate(env.args):
        _check_value(env.task, f"args[{index}]", value)
    for key, value in env.kwargs.items():
        if not isinstance(key, str):
            raise SerializationError(f"task {env.task!r}: keyword {key!r} is not a string")
        _check_value(env.task, f"kwargs[{key!r}]", value)
    for key, value in env.headers.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise SerializationError(f"task {env.task!r}: header {key!r} must be a string")


def _check_value(task: str, where: str, value: Any) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise SerializationError(
            f"task {task!r}: argument {where} is not JSON-serialisable "
            f"({type(value).__name__}): {exc}"
        ) from exc
