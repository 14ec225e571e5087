"""Bookkeeping of leased jobs between a consumer and the pool."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from queuebridge.backend import Backend, Delivery
from queuebridge.dedup import Claim

if TYPE_CHECKING:
    from queuebridge.worker.consumer import Consumer

__all__ = ["Job", "Slots", "Tracker"]


@dataclass(slots=True, eq=False)
class Job:
    """One leased delivery on its way through the worker."""

    delivery: Delivery
    backend: Backend
    consumer: Consumer
    deadline: float | None = None
    """Wall-clock soft deadline, set when the task starts."""
    warned: bool = False
    state: str = "leased"
    """``leased`` -> ``settling`` (its outcome is being reported) -> gone; or
    ``abandoned`` when the worker returned the lease on stop."""
    leased_at: float = field(default_factory=time.monotonic)
    claim: Claim | None = None
    """The dedup answer, when the consumer claimed the attempt with its batch."""
    ack_pending: bool = False
    """Handed to its consumer's acker, which frees the job's slot once it acked it."""


class Slots:
    """Free places in the pool. A consumer takes several at once (a batch lease) and
    gives back those its lease did not fill, so leased jobs never exceed the pool.

    Slots are handed out first come, first served: an ``acquire`` queues behind the
    ones already waiting, even when a slot is free. Without that, a consumer that
    gives a slot back and asks again at once always beats the one woken to take it,
    and with fewer free slots than backends the other backends are never consumed.
    """

    def __init__(self, size: int) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._free = size
        self._queue: deque[object] = deque()
        self._closed = False

    @property
    def waiting(self) -> int:
        """How many ``acquire`` calls are queued for a slot."""
        with self._cond:
            return len(self._queue)

    def acquire(self, most: int, timeout: float) -> int:
        """Take up to ``most`` free slots, waiting up to ``timeout`` for the first one
        behind the callers already waiting; return how many were taken (0 on timeout,
        or once :meth:`close` was called)."""
        with self._cond:
            if self._closed:
                return 0
            if self._free and not self._queue:
                return self._take(most)
            ticket = object()
            self._queue.append(ticket)
            try:
                self._cond.wait_for(lambda: self._closed or (
                    self._free > 0 and self._queue[0] is ticket), timeout)
                if self._closed or not self._free or self._queue[0] is not ticket:
                    return 0
                return self._take(most)
            finally:
                self._queue.remove(ticket)
                if self._free and self._queue:
                    self._cond.notify_all()  # the next in line may take what is left

    def _take(self, most: int) -> int:
        taken = min(most, self._free)
        self._free -= taken
        return taken

    def release(self, count: int = 1) -> None:
        """Give back ``count`` slots."""
        if count:
            with self._cond:
                self._free += count
                if self._queue:
                    # Only the first in line may take it: wake them all (a few consumers).
                    self._cond.notify_all()

    def close(self) -> None:
        """The worker stops leasing: wake every waiter; ``acquire`` returns 0 from now on."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class Tracker:
    """Every job leased and not yet settled, plus an epoch that moves whenever one
    finishes (burst mode uses it to know an empty poll started after the last job)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._active: set[Job] = set()
        self._settling = 0
        self.epoch = 0

    def add(self, jobs: list[Job]) -> None:
        """A consumer leased ``jobs``."""
        with self._cond:
            self._active.update(jobs)

    def settle(self, job: Job) -> bool:
        """Claim the right to report ``job``'s outcome; False if it was abandoned."""
        with self._cond:
            if job.state != "leased":
                return False
            self._active.discard(job)
            job.state = "settling"
            self._settling += 1
            return True

    def done(self, job: Job) -> None:
        """The pool is finished with ``job`` (settled or abandoned)."""
        with self._cond:
            if job.state == "leased":
                self._active.discard(job)
            elif job.state == "settling":
                self._settling -= 1
            job.state = "done"
            self.epoch += 1
            self._cond.notify_all()

    def abandon(self) -> list[Job]:
        """Take every unsettled job away from the pool (the worker returns them)."""
        with self._cond:
            jobs = list(self._active)
            self._active.clear()
            for job in jobs:
                job.state = "abandoned"
            self.epoch += 1
            self._cond.notify_all()
            return jobs

    def count(self) -> int:
        """Jobs leased and not yet finished."""
        with self._cond:
            return len(self._active) + self._settling

    def of(self, consumer: Consumer) -> list[Job]:
        """The unsettled jobs ``consumer`` leased (to touch their leases)."""
        with self._cond:
            return [job for job in self._active if job.consumer is consumer]

    def job_ids(self) -> list[str]:
        """Ids of the jobs in flight (for heartbeats)."""
        with self._cond:
            return sorted(job.delivery.job_id for job in self._active)

    def wait_empty(self, timeout: float) -> bool:
        """Block until no job is in flight or ``timeout`` passes; True if empty."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._active or self._settling:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True
