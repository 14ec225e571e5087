"""Worker state in Redis: dedup claims, heartbeats and checkpoints shared by every host.

Selected with ``[queuebridge.worker] state = "redis://..."`` (also ``rediss://``,
``unix://``, ``redis+sentinel://``). Keys, all under ``queuebridge:``:

==========================================  ===============================================
``queuebridge:claim:<job id>:<attempt>``    ``running:<owner>`` until the lease expires,
                                            then ``done`` for the dedup TTL
``queuebridge:workers``                     hash: worker name -> ``<server time> <info JSON>``
``queuebridge:checkpoint:<job id>``         the job's checkpoint JSON, for ``checkpoint_ttl``
==========================================  ===============================================

Expiry is Redis's own (``PX``/``EX``): an expired claim simply disappears and the next
``SET NX`` takes it over, which is the takeover rule of the SQLite store. Every call is
bounded by the client's socket timeouts; any Redis or socket error becomes
:class:`~queuebridge.dedup.StoreUnavailable`, and the worker then runs jobs anyway.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

import redis
from redis.commands.core import Script

from queuebridge.dedup import Claim, DedupStore, StoreUnavailable
from queuebridge.errors import SerializationError
from queuebridge.heartbeat import HeartbeatStore, WorkerInfo
from queuebridge.redact import redact_text, redact_url
from queuebridge.state import CheckpointStore, WorkerState
from queuebridge_rq import scripts
from queuebridge_rq.connection import connect
from queuebridge_rq.options import RQOptions
from queuebridge_rq.records import text

__all__ = ["RedisCheckpoints", "RedisDedupStore", "RedisHeartbeats", "RedisStateClient",
           "RedisWorkerState"]

PREFIX: Final = "queuebridge:"
TIMEOUT: Final = 2.0
"""Default bound, in seconds, of every state call (``?socket_timeout=`` in the URL wins)."""
WORKERS_KEPT: Final = 86_400
"""Seconds a silent worker stays listed (as dead) before it is forgotten."""
CHECKPOINT_TTL: Final = 7 * 86_400
"""Seconds a checkpoint is kept after its last save."""
_CLAIMS: Final = {1: Claim.CLAIMED, 2: Claim.DONE, 3: Claim.BUSY}
_ERRORS: Final = (redis.RedisError, OSError)


def _ms(seconds: float) -> int:
    # PX rejects 0: a zero lease or TTL is "expires at once", so 1 ms.
    return max(1, round(seconds * 1000))


class RedisStateClient:
    """One redis-py client shared by the three stores; translates every error."""

    def __init__(self, url: str, timeout: float = TIMEOUT) -> None:
        self.location = redact_url(url)
        self.client: redis.Redis = connect(url, timeout, timeout, RQOptions(),
                                           path="worker.state")
        self._scripts: dict[str, Script] = {}
        self._lock = threading.Lock()

    @contextmanager
    def guarded(self, operation: str) -> Iterator[redis.Redis]:
        """Run Redis calls; any driver or socket error becomes ``StoreUnavailable``."""
        try:
            yield self.client
        except _ERRORS as exc:
            raise StoreUnavailable(redact_text(
                f"worker state {self.location}: {operation} failed: "
                f"{type(exc).__name__}: {exc}")) from exc

    def run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run the Lua script ``scripts.<name>`` (loaded on first use)."""
        with self._lock:
            script = self._scripts.get(name)
            if script is None:
                script = self._scripts[name] = self.client.register_script(
                    getattr(scripts, name))
        with self.guarded(name.lower()):
            return script(keys=list(keys), args=list(args), client=self.client)

    def close(self) -> None:
        """Drop the connections. Idempotent."""
        with self.guarded("close"):
            self.client.connection_pool.disconnect()


class RedisDedupStore(DedupStore):
    """Claims on ``(job id, attempt)`` in Redis, atomic across every host (Lua)."""

    def __init__(self, state: RedisStateClient) -> None:
        self._state = state

    @staticmethod
    def key(job_id: str, attempt: int) -> str:
        """The Redis key of one attempt's claim."""
        return f"{PREFIX}claim:{job_id}:{attempt}"

    def claim(self, job_id: str, attempt: int, owner: str, lease: float) -> Claim:
        return self.claim_many([(job_id, attempt)], owner, lease)[0]

    def claim_many(self, keys: Sequence[tuple[str, int]], owner: str, lease: float
                   ) -> list[Claim]:
        """:meth:`claim` for a batch in one round trip; answers in order."""
        if not keys:
            return []
        codes = self._state.run("CLAIM", [self.key(*key) for key in keys],
                                [f"running:{owner}", _ms(lease)])
        return [_CLAIMS[int(code)] for code in codes]

    def renew(self, keys: Sequence[tuple[str, int]], owner: str, lease: float) -> None:
        if keys:
            self._state.run("RENEW", [self.key(*key) for key in keys],
                            [f"running:{owner}", _ms(lease)])

    def finish(self, job_id: str, attempt: int, ttl: float) -> None:
        with self._state.guarded("finish") as client:
            if ttl > 0:
                client.set(self.key(job_id, attempt), "done", px=_ms(ttl))
            else:
                client.delete(self.key(job_id, attempt))

    def release(self, job_id: str, attempt: int, owner: str) -> None:
        self._state.run("RELEASE", [self.key(job_id, attempt)], [f"running:{owner}"])

    def close(self) -> None:
        self._state.close()


class RedisHeartbeats(HeartbeatStore):
    """Heartbeats in one Redis hash, listable from any host.

    Beats carry the Redis server's clock; :meth:`workers` converts them to the reader's
    clock, so ``WorkerInfo.alive`` is right even when the hosts' clocks disagree.
    """

    KEY: Final = f"{PREFIX}workers"

    def __init__(self, state: RedisStateClient, kept: int = WORKERS_KEPT) -> None:
        self._state = state
        self._kept = kept

    def beat(self, info: WorkerInfo) -> None:
        """Record ``info``, stamped with the server's time."""
        self._state.run("BEAT", [self.KEY], [info.name, info.to_json(), self._kept])

    def remove(self, name: str) -> None:
        """A worker stopped cleanly: drop it."""
        with self._state.guarded("remove") as client:
            client.hdel(self.KEY, name)

    def workers(self) -> list[WorkerInfo]:
        """Every listed worker, by name; those silent longer than ``kept`` are forgotten."""
        with self._state.guarded("workers") as client, client.pipeline(transaction=False
                                                                        ) as pipe:
            pipe.time()
            pipe.hgetall(self.KEY)
            (seconds, micros), entries = pipe.execute()
        offset = time.time() - (seconds + micros / 1e6)
        found, stale = [], []
        for raw_name, raw in entries.items():
            stamp, _, info = text(raw).partition(" ")
            beat = float(stamp) + offset
            if time.time() - beat > self._kept:
                stale.append(raw_name)
            else:
                found.append(WorkerInfo.from_json(info, beat))
        if stale:
            with self._state.guarded("workers") as client:
                client.hdel(self.KEY, *stale)
        return sorted(found, key=lambda worker: worker.name)

    def close(self) -> None:
        """Drop the connections. Idempotent."""
        self._state.close()


class RedisCheckpoints(CheckpointStore):
    """Checkpoints as JSON strings, each kept ``ttl`` seconds after its last save."""

    def __init__(self, state: RedisStateClient, ttl: int = CHECKPOINT_TTL) -> None:
        self._state = state
        self._ttl = ttl

    @staticmethod
    def key(job_id: str) -> str:
        """The Redis key of a job's checkpoint."""
        return f"{PREFIX}checkpoint:{job_id}"

    def save(self, job_id: str, state: Any) -> None:
        try:
            payload = json.dumps(state, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise SerializationError(f"job {job_id}: checkpoint state is not JSON: {exc}"
                                     ) from exc
        with self._state.guarded("checkpoint save") as client:
            client.set(self.key(job_id), payload, ex=self._ttl)

    def load(self, job_id: str) -> Any | None:
        with self._state.guarded("checkpoint load") as client:
            raw = client.get(self.key(job_id))
        return None if raw is None else json.loads(raw)

    def clear(self, job_id: str) -> None:
        with self._state.guarded("checkpoint clear") as client:
            client.delete(self.key(job_id))

    def close(self) -> None:
        self._state.close()


@dataclass(frozen=True, slots=True)
class RedisWorkerState(WorkerState):
    """The worker state of every host in one Redis (see the module docstring)."""

    @classmethod
    def from_url(cls, url: str) -> RedisWorkerState:
        """Build the stores for ``url``; connects on first use. Raises ``ConfigError``
        (key ``worker.state``) for a URL the Redis client cannot use."""
        state = RedisStateClient(url)
        return cls(RedisDedupStore(state), RedisHeartbeats(state), RedisCheckpoints(state),
                   state.location)
