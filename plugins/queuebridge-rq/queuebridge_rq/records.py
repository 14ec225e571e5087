"""RQ-native records: Redis key names and the job hash RQ's ``Job.save`` would write.

A queuebridge envelope becomes an RQ job with the same id. The hash carries what
RQ's tools read (``data`` = zlib-compressed JSON ``[func_name, None, args, kwargs]``
exactly as RQ's ``JSONSerializer`` writes it, ``origin``, ``status``, timestamps);
the fields RQ has no slot for (attempt, max_retries, headers, created_at,
not_before) live in ``meta["queuebridge"]``. We write the fields ourselves, in the
same script as the queue push, so a send is one round trip; a test checks that
``rq.job.Job.fetch`` reads them back.
"""

from __future__ import annotations

import contextlib
import json
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from redis.typing import EncodableT
from rq.job import Job
from rq.queue import Queue
from rq.registry import (
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)

from queuebridge.envelope import ENVELOPE_VERSION, Envelope
from queuebridge.errors import EnvelopeError

__all__ = ["JOB_FIELDS", "META_KEY", "QueueKeys", "decode_job", "encode_job", "job_key",
           "job_values", "rq_timestamp", "text"]

META_KEY: Final = "queuebridge"
JOB_PREFIX: Final[str] = Job.redis_job_namespace_prefix
QUEUES_SET: Final[str] = Queue.redis_queues_keys
_TIMESTAMP_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%fZ"
JOB_FIELDS: Final = ("created_at", "data", "origin", "description", "enqueued_at", "result_ttl",
                     "failure_ttl", "meta", "qb_attempt")
"""The job hash's fields, in the order of :func:`job_values` (``status`` is set apart).
``qb_attempt`` (the envelope's attempt, also in ``meta``) lets the send script tell a
resend of the attempt Redis holds from the next attempt of a retry."""


def text(value: object) -> str:
    """A Redis reply (bytes without ``decode_responses``) as ``str``."""
    return value.decode() if isinstance(value, bytes) else str(value)


def job_key(job_id: str) -> str:
    """The Redis key of a job's hash (``rq:job:<id>``)."""
    return JOB_PREFIX + job_id


def rq_timestamp(when: float) -> str:
    """A unix time in RQ's timestamp format (UTC, microseconds, trailing ``Z``)."""
    return datetime.fromtimestamp(when, UTC).strftime(_TIMESTAMP_FORMAT)


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """Every Redis key belonging to one queue, named the way RQ names them."""

    name: str
    queue: str
    """RQ's queue list ``rq:queue:<name>`` (RPUSH to enqueue, LPOP to take)."""
    leases: str
    """Our lease clock: sorted set of ``<job_id>:<token>`` scored by lease expiry."""
    started: str
    """RQ's StartedJobRegistry ``rq:wip:<name>``: the same members, for RQ's tools."""
    scheduled: str
    finished: str
    failed: str

    @classmethod
    def for_queue(cls, name: str) -> QueueKeys:
        """The keys of queue ``name``."""
        queue = Queue.redis_queue_namespace_prefix + name
        return cls(
            name=name,
            queue=queue,
            leases=f"{queue}:leases",
            started=StartedJobRegistry.key_template.format(name),
            scheduled=ScheduledJobRegistry.key_template.format(name),
            finished=FinishedJobRegistry.key_template.format(name),
            failed=FailedJobRegistry.key_template.format(name),
        )


def job_values(envelope: Envelope, stamp: str, result_ttl: int, failure_ttl: int
               ) -> list[EncodableT]:
    """The values of the job hash's :data:`JOB_FIELDS`, in order: what RQ's
    ``Job.to_dict`` writes for a freshly enqueued job, minus ``status`` and the fields
    it writes empty (callbacks, worker, started/ended): RQ reads a missing field as
    empty, and every field costs encoding time on the hot path. ``stamp`` is the
    enqueue time in RQ's format (:func:`rq_timestamp`), computed once per batch."""
    payload = [envelope.task, None, list(envelope.args), dict(envelope.kwargs)]
    meta = {META_KEY: {
        "v": ENVELOPE_VERSION,
        "attempt": envelope.attempt,
        "max_retries": envelope.max_retries,
        "created_at": envelope.created_at,
        "not_before": envelope.not_before,
        "headers": dict(envelope.headers),
    }}
    return [
        rq_timestamp(envelope.created_at) if envelope.created_at else stamp,
        zlib.compress(json.dumps(payload, separators=(",", ":")).encode()),
        envelope.queue,
        envelope.task,
        stamp,
        result_ttl,
        failure_ttl,
        json.dumps(meta, separators=(",", ":")).encode(),
        envelope.attempt,
    ]


def encode_job(envelope: Envelope, stamp: str, result_ttl: int, failure_ttl: int,
               status: str) -> dict[EncodableT, EncodableT]:
    """The whole job hash (:func:`job_values` by field name, plus ``status``)."""
    fields: dict[EncodableT, EncodableT] = dict(
        zip(JOB_FIELDS, job_values(envelope, stamp, result_ttl, failure_ttl), strict=True))
    fields["status"] = status
    return fields


def _load_json(raw: bytes | None, what: str, job_id: str) -> Any:
    if raw is None:
        raise EnvelopeError(f"job {job_id}: the RQ job hash has no {what!r} field "
                            "(missing or expired job)")
    try:
        if what == "data":
            with contextlib.suppress(zlib.error):  # RQ itself accepts uncompressed data
                raw = zlib.decompress(raw)
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EnvelopeError(f"job {job_id}: RQ field {what!r} is not JSON: {exc}") from exc


def decode_job(job_id: str, queue: str, data: bytes | None, meta: bytes | None) -> Envelope:
    """Rebuild the envelope from a job hash's ``data`` and ``meta``.

    Raises :class:`EnvelopeError` for a hash queuebridge did not write or cannot read
    (a job enqueued with RQ's pickle serializer, a truncated hash, a missing job).
    """
    payload = _load_json(data, "data", job_id)
    if not (isinstance(payload, list) and len(payload) == 4):
        raise EnvelopeError(f"job {job_id}: RQ 'data' is not [func, instance, args, kwargs]")
    extra = _load_json(meta, "meta", job_id) if meta else {}
    fields = extra.get(META_KEY) if isinstance(extra, dict) else None
    if not isinstance(fields, dict):
        raise EnvelopeError(f"job {job_id}: not a queuebridge job (no meta[{META_KEY!r}])")
    return Envelope.from_dict({
        **fields, "id": job_id, "task": payload[0], "args": payload[2],
        "kwargs": payload[3], "queue": queue,
    })
