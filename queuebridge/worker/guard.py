"""The worker's side of dedup and checkpoints: never let a failing store stop a job."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

from queuebridge.checkpoint import SQLiteCheckpoints
from queuebridge.dedup import Claim, DedupStore, StoreUnavailable
from queuebridge.envelope import Envelope

__all__ = ["DedupGuard"]

log = logging.getLogger("queuebridge.worker")
T = TypeVar("T")


class DedupGuard:
    """Claims attempts in a :class:`DedupStore` on behalf of one worker.

    With no store every attempt is claimed. When the store fails the job runs anyway
    (at-least-once beats at-most-once); the failure is logged once per outage.
    """

    def __init__(self, store: DedupStore | None, owner: str, ttl: float,
                 checkpoints: SQLiteCheckpoints | None = None) -> None:
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

    def finish(self, env: Envelope, succeeded: bool) -> None:
        """The attempt's outcome reached a broker: remember it as done."""
        store, checkpoints = self.store, self.checkpoints
        if store is not None:
            self._safely(lambda: store.finish(env.id, env.attempt, self.ttl))
        if succeeded and checkpoints is not None:
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

    def close(self) -> None:
        """Close the stores."""
        if self.store is not None:
            self.store.close()
        if self.checkpoints is not None:
            self.checkpoints.close()

    def _safely(self, action: Callable[[], T]) -> T | None:
        try:
            result = action()
        except StoreUnavailable as exc:
            with self._lock:
                first, self._down = not self._down, True
            if first:
                log.warning("worker: dedup store unavailable, running jobs without "
                            "duplicate checks: %s", exc)
            return None
        if self._down:
            with self._lock:
                recovered, self._down = self._down, False
            if recovered:
                log.info("worker: dedup store reachable again")
        return result
