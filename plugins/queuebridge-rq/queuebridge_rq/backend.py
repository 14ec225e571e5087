"""The ``rq`` backend: queuebridge jobs stored as real RQ jobs in Redis.

Where each job lives (see :mod:`queuebridge_rq.records` for key names):

========================  ==============================================
ready                     RQ's queue list ``rq:queue:<name>``
delayed (``not_before``)  RQ's ScheduledJobRegistry ``rq:scheduled:<name>``
leased                    ``rq:queue:<name>:leases`` (expiry clock) and RQ's
                          StartedJobRegistry ``rq:wip:<name>`` (for RQ's tools)
acked                     RQ's FinishedJobRegistry for ``result_ttl`` seconds
dead-lettered             RQ's FailedJobRegistry, reason in ``exc_info``
========================  ==============================================

Every transition is one Lua script (atomic), a batch send, lease and ack included; a send
leaves alone an id this broker already holds (queued, scheduled or started). Lease expiry
and due times are judged by the Redis server's clock (``TIME`` inside the scripts), never
by the calling host's: see :mod:`queuebridge_rq.scripts`. The host's clock only stamps
RQ's informational timestamps (``enqueued_at``, ``started_at``).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import zlib
from collections.abc import Sequence
from typing import Any, ClassVar

import redis
from redis.commands.core import Script
from rq.job import Job
from rq.results import Result
from rq.serializers import JSONSerializer

from queuebridge.backend import Backend, BackendSettings, Capabilities, Delivery, lost_leases
from queuebridge.envelope import Envelope
from queuebridge.errors import EnvelopeError, LeaseLost
from queuebridge_rq import scripts
from queuebridge_rq.connection import DEFAULT_URL, connect
from queuebridge_rq.errors import translated
from queuebridge_rq.options import OPTION_KEYS, RQOptions, check_options
from queuebridge_rq.records import (
    JOB_FIELDS,
    JOB_PREFIX,
    QUEUES_SET,
    QueueKeys,
    decode_job,
    encode_job,
    job_key,
    job_values,
    rq_timestamp,
    text,
)

__all__ = ["RQBackend"]

_MALFORMED_DATA = json.dumps(["queuebridge.malformed", None, [], {}]).encode()


class RQBackend(Backend):
    """A Redis server (or Sentinel-managed master) holding RQ-native jobs."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        delayed=True, results=True, batch_send=True, batch_ack=True
    )
    option_keys: ClassVar[frozenset[str]] = OPTION_KEYS
    default_url: ClassVar[str] = DEFAULT_URL

    def __init__(self, settings: BackendSettings) -> None:
        super().__init__(settings)
        self.options = RQOptions.from_mapping(check_options(settings.options, "options"))
        self._client: redis.Redis | None = None
        self._lock = threading.Lock()
        self._keys: dict[str, QueueKeys] = {}
        self._scripts: dict[str, Script] = {}

    @classmethod
    def validate_options(cls, options: Any, path: str) -> dict[str, Any]:
        """Check option names and types; raise ``ConfigError`` naming ``path.key``."""
        return check_options(options, path)

    # -- plumbing ------------------------------------------------------------------

    @property
    def client(self) -> redis.Redis:
        """The redis-py client (built on first use; connects on the first command)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = connect(self.settings.url, self.settings.timeout,
                                           self.settings.connect_timeout, self.options)
        return self._client

    def _script(self, name: str) -> Script:
        script = self._scripts.get(name)
        if script is None:
            script = self.client.register_script(getattr(scripts, name))
            self._scripts[name] = script
        return script

    def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        with translated(self.name, name.lower()):
            return self._script(name)(keys=list(keys), args=list(args), client=self.client)

    def queue_keys(self, queue: str) -> QueueKeys:
        """The Redis keys of ``queue`` (cached)."""
        keys = self._keys.get(queue)
        if keys is None:
            keys = self._keys[queue] = QueueKeys.for_queue(queue)
        return keys

    def _group(self, keys: QueueKeys) -> list[str]:
        return [keys.queue, keys.leases, keys.started, keys.scheduled]

    # -- sending -------------------------------------------------------------------

    def _send(self, envelope: Envelope) -> None:
        self._send_many((envelope,))

    def _send_many(self, envelopes: Sequence[Envelope]) -> None:
        """One script call for the whole batch. An id whose job Redis already holds
        (queued, scheduled or started: a spool replay, a resend after a lost reply) is
        left alone; a finished, failed or unknown id is (re)written and queued."""
        stamp = rq_timestamp(time.time())
        result_ttl, failure_ttl = self.options.result_ttl, self.options.failure_ttl
        numbers: dict[str, int] = {}
        keys = [QUEUES_SET]
        args: list[Any] = [JOB_PREFIX, len(JOB_FIELDS), *JOB_FIELDS]
        for envelope in envelopes:
            number = numbers.get(envelope.queue)
            if number is None:
                number = numbers[envelope.queue] = len(numbers)
                queue_keys = self.queue_keys(envelope.queue)
                keys += (queue_keys.queue, queue_keys.scheduled)
            args += (number, envelope.id,
                     "" if envelope.not_before is None else repr(envelope.not_before))
            args += job_values(envelope, stamp, result_ttl, failure_ttl)
        self._run("SEND", keys, args)

    # -- leasing -------------------------------------------------------------------

    def _reserve(self, queues: Sequence[str], timeout: float) -> Delivery | None:
        leased = self._reserve_many(queues, 1, timeout)
        return leased[0] if leased else None

    def _reserve_many(self, queues: Sequence[str], limit: int, timeout: float
                      ) -> list[Delivery]:
        groups = [key for queue in queues for key in self._group(self.queue_keys(queue))]
        deadline = time.monotonic() + timeout
        pause = 0.005
        while True:
            reply = self._run("RESERVE", groups, [
                repr(self.settings.lease_timeout), secrets.token_hex(8), JOB_PREFIX,
                rq_timestamp(time.time()), limit,
            ])
            if reply:
                return [self._delivery(queues[int(reply[at])], reply[at:at + 5])
                        for at in range(0, len(reply), 5)]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            # Polling (not BLMOVE): a blocking pop cannot be made atomic with the lease
            # across several queues; the pause backs off to ``poll_interval`` when idle.
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, self.options.poll_interval)

    def _delivery(self, queue: str, reply: list[Any]) -> Delivery:
        member = text(reply[1])
        job_id = member.rpartition(":")[0]
        data, meta, redelivered = reply[2], reply[3], reply[4]
        try:
            envelope: Envelope | None = decode_job(job_id, queue, data, meta)
            problem, raw = "", b""
        except EnvelopeError as exc:
            envelope, problem, raw = None, str(exc), data or b""
        return Delivery(self.name, queue, member, envelope, raw, problem,
                        redelivered=bool(redelivered))

    def _lease_args(self, delivery: Delivery) -> tuple[QueueKeys, str, str]:
        member = str(delivery.receipt)
        return self.queue_keys(delivery.queue), member, member.rpartition(":")[0]

    def _lost(self, delivery: Delivery, operation: str) -> LeaseLost:
        return LeaseLost(f"{operation}: job {delivery.job_id} is no longer leased "
                         "(acked already, or recovered after its lease expired)",
                         backend=self.name)

    def _ack(self, delivery: Delivery) -> None:
        self._ack_many((delivery,))

    def _ack_many(self, deliveries: Sequence[Delivery]) -> None:
        """One script call for the whole batch; lost leases are reported after it."""
        keys: list[str] = []
        args: list[Any] = []
        for delivery in deliveries:
            queue_keys, member, job_id = self._lease_args(delivery)
            keys += [queue_keys.leases, queue_keys.started, queue_keys.finished, job_key(job_id)]
            args += [member, job_id]
        acked = self._run("ACK", keys, [rq_timestamp(time.time()), self.options.result_ttl, *args])
        lost = [delivery for delivery, done in zip(deliveries, acked, strict=True) if not done]
        if len(deliveries) == 1 and lost:
            raise self._lost(lost[0], "ack")
        if lost:
            raise lost_leases(self.name, lost, len(deliveries))

    def _retry(self, delivery: Delivery, envelope: Envelope) -> None:
        keys, member, _ = self._lease_args(delivery)
        target = self.queue_keys(envelope.queue)
        # The script sets the status: ``scheduled`` while not_before is ahead of Redis's clock.
        fields = encode_job(envelope, rq_timestamp(time.time()), self.options.result_ttl,
                            self.options.failure_ttl, "queued")
        flat = [item for pair in fields.items() for item in pair]
        not_before = "" if envelope.not_before is None else repr(envelope.not_before)
        done = self._run("RETRY", [keys.leases, keys.started, target.queue, target.scheduled,
                                   job_key(envelope.id)],
                         [member, envelope.id, not_before, *flat])
        if not done:
            raise self._lost(delivery, "retry")

    def _touch(self, deliveries: Sequence[Delivery]) -> None:
        self._run("TOUCH", [self.queue_keys(d.queue).leases for d in deliveries],
                  [repr(self.settings.lease_timeout), *(str(d.receipt) for d in deliveries)])

    def _dead_letter(self, delivery: Delivery, reason: str) -> None:
        keys, member, job_id = self._lease_args(delivery)
        done = self._run("DEAD_LETTER", [keys.leases, keys.started, keys.failed, job_key(job_id)],
                         [member, job_id, zlib.compress(reason.encode()),
                          rq_timestamp(time.time()), self.options.failure_ttl,
                          zlib.compress(_MALFORMED_DATA), keys.name])
        if not done:
            raise self._lost(delivery, "dead_letter")

    def _dead_letters(self, queue: str, limit: int) -> list[tuple[Delivery, str]]:
        keys = self.queue_keys(queue)
        with translated(self.name, "dead_letters"):
            ids = [text(raw) for raw in self.client.zrange(keys.failed, 0, limit - 1)]
            with self.client.pipeline(transaction=False) as pipe:
                for job_id in ids:
                    pipe.hmget(job_key(job_id), ["data", "meta", "exc_info"])
                rows = pipe.execute()
        found = []
        for job_id, (data, meta, exc_info) in zip(ids, rows, strict=True):
            reason = zlib.decompress(exc_info).decode() if exc_info else ""
            try:
                envelope: Envelope | None = decode_job(job_id, queue, data, meta)
            except EnvelopeError:
                envelope = None
            found.append((Delivery(self.name, queue, job_id, envelope, data or b""), reason))
        return found

    # -- upkeep --------------------------------------------------------------------

    def _recover(self) -> int:
        with translated(self.name, "recover"):
            members = self.client.smembers(QUEUES_SET)
        prefix = QueueKeys.for_queue("").queue
        names = sorted(text(m)[len(prefix):] for m in members if text(m).startswith(prefix))
        groups = [key for name in names for key in self._group(self.queue_keys(name))]
        if not groups:
            return 0
        return int(self._run("RECOVER", groups, [JOB_PREFIX, rq_timestamp(time.time())]))

    def _ping(self) -> None:
        with translated(self.name, "ping"):
            self.client.ping()

    def _depth(self, queue: str) -> int:
        keys = self.queue_keys(queue)
        with translated(self.name, "depth"), self.client.pipeline(transaction=False) as pipe:
            pipe.llen(keys.queue)
            pipe.zcard(keys.scheduled)
            ready, delayed = pipe.execute()
        return int(ready) + int(delayed)

    def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with translated(self.name, "close"):
                client.connection_pool.disconnect()

    # -- results and status ----------------------------------------------------------

    def _job_status(self, job_id: str) -> str | None:
        """RQ's own status field: ``queued``, ``scheduled``, ``started``, ``finished``,
        ``failed``; ``None`` when Redis holds no such job (never sent, or expired)."""
        with translated(self.name, "job_status"):
            status = self.client.hget(job_key(job_id), "status")
        return text(status) if status is not None else None

    def _job_result(self, job_id: str) -> Any:
        job = Job(job_id, connection=self.client, serializer=JSONSerializer)
        with translated(self.name, "job_result"):
            result = Result.fetch_latest(job, serializer=JSONSerializer)
        if result is None or result.type != Result.Type.SUCCESSFUL:
            return None
        return result.return_value

    def _store_result(self, envelope: Envelope, value: Any) -> None:
        """RQ's results stream, kept ``result_ttl`` seconds (RQ's ``job.return_value()``
        reads it); nothing is kept when ``result_ttl`` is 0."""
        ttl = self.options.result_ttl
        if ttl == 0:
            return
        job = Job(envelope.id, connection=self.client, serializer=JSONSerializer)
        with translated(self.name, "store_result"):
            Result.create(job, Result.Type.SUCCESSFUL, ttl, return_value=value)
