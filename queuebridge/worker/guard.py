"""The worker's side of dedup and checkpoints: never let a failing store stop a job."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from queuebridge.context import CheckpointAccess
from queuebridge.dedup import Claim, DedupStore, StoreUnavailable
from queuebridge.envelope import Envelope
from queuebridge.state import CheckpointStore

__all__ = ["CheckpointUse", "DedupGuard"]

log = logging.getLogger("queuebridge.worker")
T = TypeVar("T")


class CheckpointUse:
    """The checkpoint store as one attempt sees it, noting whether the task used it.

    A task that never calls ``checkpoint()`` or ``last_checkpoint()`` in this attempt
    never saved one in any other attempt either (same code), so its success needs no
    DELETE: that saves one write per job for the many tasks without checkpoints.
    """

    __slots__ = ("_store", "used")

    def __init__(self, store: CheckpointAccess) -> None:
        self._store = store
        self.used = False

    def save(self, job_id: str, state: Any) -> None:
        """Save through to the store."""
        self.used = True
        self._store.save(job_id, state)

    def load(self, job_id: str) -> Any | None:
        """Load from the store."""
        self.used = True
        return self._store.load(job_id)


class DedupGuard:
    """Claims attempts in a :class:`DedupStore` on behalf of one worker.

    With no store every attempt is claimed. When the store fails the job runs anyway
    (at-least-once beats at-most-once); the failure is logged once per outage.
    """

    def __init__(self, store: DedupStore | None, owner: str, ttl: float,
                 checkpoints: CheckpointStore | None = None) -> None:
        self.store = store
        self.owner = owner
        self.ttl = ttl
        self.checkpoints = checkpoints
        self._down = False
        self._lock = threading.Lock()

    def claim(self, env: Envelope, lease: float) -> Claim:
        """Claim ``env``'s attempt; ``CLAIMED`` too when there is no usable store."""
        store = self.store
        if store is None:
            return Claim.CLAIMED
        result = self._safely(lambda: store.claim(env.id, env.attempt, self.owner, lease))
        return Claim.CLAIMED if result is None else result

    def claim_many(self, envelopes: Sequence[Envelope], lease: float) -> list[Claim]:
        """Claim a leased batch in one store round trip; ``CLAIMED`` for all without a
        usable store."""
        store = self.store
        if store is None or not envelopes:
            return [Claim.CLAIMED] * len(envelopes)
        keys = [(env.id, env.attempt) for env in envelopes]
        result = self._safely(lambda: store.claim_many(keys, self.owner, lease))
        return [Claim.CLAIMED] * len(envelopes) if result is None else result

    def flush(self, older_than: float) -> None:
        """Write finished attempts the store buffered for at least ``older_than`` s."""
        store = self.store
        if store is not None:
            # Not a health signal: with nothing buffered it succeeds without any I/O.
            self._safely(lambda: store.flush(older_than), healthy_if_ok=False)

    def finish(self, env: Envelope, succeeded: bool, clear_checkpoint: bool = True) -> None:
        """The attempt's outcome reached a broker: remember it as done (and on success
        forget the job's checkpoint, when the attempt used checkpoints)."""
        store, checkpoints = self.store, self.checkpoints
        if store is not None:
            # Buffered by some stores, so its success says nothing about their health.
            self._safely(lambda: store.finish(env.id, env.attempt, self.ttl),
                         healthy_if_ok=False)
        if succeeded and clear_checkpoint and checkpoints is not None:
            self._safely(lambda: checkpoints.clear(env.id))

    def release(self, env: Envelope) -> None:
        """The attempt was not recorded anywhere: let its redelivery run it again."""
        store = self.store
        if store is not None:
            self._safely(lambda: store.release(env.id, env.attempt, self.owner))

    def renew(self, envelopes: Sequence[Envelope], lease: float) -> None:
        """Keep the claims of long-running attempts alive."""
        store = self.store
        if store is not None and envelopes:
            keys = [(env.id, env.attempt) for env in envelopes]
            self._safely(lambda: store.renew(keys, self.owner, lease))

    def _safely(self, action: Callable[[], T], healthy_if_ok: bool = True) -> T | None:
        try:
            result = action()
        except StoreUnavailable as exc:
            with self._lock:
                first, self._down = not self._down, True
            if first:
                log.warning("worker: dedup store unavailable, running jobs without "
                            "duplicate checks: %s", exc)
            return None
        if self._down and healthy_if_ok:
            with self._lock:
                recovered, self._down = self._down, False
            if recovered:
                log.info("worker: dedup store reachable again")
        return result
