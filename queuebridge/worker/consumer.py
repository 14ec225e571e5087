"""One consumer thread per backend: lease jobs when a pool slot is free, keep the
leases of running jobs alive, recover orphans, and ride out broker outages."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from queuebridge.backend import Backend, Delivery
from queuebridge.envelope import Envelope
from queuebridge.errors import BackendError
from queuebridge.worker.acks import Acker
from queuebridge.worker.backoff import Reconnect
from queuebridge.worker.guard import DedupGuard
from queuebridge.worker.options import WorkerOptions
from queuebridge.worker.tracking import Job, Slots, Tracker

__all__ = ["Consumer", "Shared"]

log = logging.getLogger("queuebridge.worker")


@dataclass(slots=True)
class Shared:
    """What every consumer shares with the worker."""

    options: WorkerOptions
    tracker: Tracker
    slots: Slots
    work: queue.SimpleQueue[Job | None]
    stopping: threading.Event
    """Stop leasing new jobs (keep touching the running ones)."""
    closed: threading.Event
    """Exit now."""
    wake: threading.Event
    """Nudges the worker's main loop (a consumer went idle or gave up)."""
    guard: DedupGuard
    runnable: Callable[[Envelope], bool]
    """Whether the worker would run this envelope now (so its attempt is claimed)."""

    def release(self, job: Job) -> None:
        """The worker is finished with ``job`` (outcome reported, or abandoned): it
        leaves the tracker and its pool slot is free."""
        self.tracker.done(job)
        self.slots.release()


class Consumer:
    """Leases from one backend into the shared pool. Never dies of a broker error."""

    def __init__(self, backend: Backend, shared: Shared,
                 on_overrun: Callable[[Job], None] | None = None) -> None:
        self.backend = backend
        self.shared = shared
        self.idle_epoch = -1
        """The tracker epoch at the start of the last poll that found nothing."""
        self.skipped = False
        """Burst mode gave up on this backend (down at start, or down too long)."""
        self.quiet = threading.Event()
        """Set once this consumer has stopped leasing (so no lease escapes a drain)."""
        self.down_since: float | None = None
        self.polls_ok = 0
        self._on_overrun = on_overrun
        self.acker = Acker(backend, shared.release)
        """Acks this backend's finished jobs in batches (one ``ack_many`` each)."""
        self._reconnect = Reconnect(shared.options.reconnect_backoff,
                                    shared.options.reconnect_backoff_max)
        self._pause_until = 0.0
        self._next_probe = 0.0
        """While the broker is down: when to ping it next (the reconnect backoff)."""
        self._idle = True
        now = time.monotonic()
        self._next_touch = now + self._touch_interval
        self._next_recover = now  # recover orphans of dead workers as soon as we start
        self.thread = threading.Thread(target=self._run, name=f"qb-consumer-{backend.name}",
                                       daemon=True)

    @property
    def _touch_interval(self) -> float:
        return max(0.05, self.backend.settings.lease_timeout / 3)

    @property
    def _recover_interval(self) -> float:
        # An orphan is recoverable once its lease expired: looking only every
        # recover_interval (30 s) would leave it waiting long after a 5 s lease.
        return max(0.05, min(self.shared.options.recover_interval,
                             self.backend.settings.lease_timeout / 2))

    def start(self) -> None:
        """Start the consumer and acker threads."""
        self.acker.start()
        self.thread.start()

    def pause_until(self, when: float) -> None:
        """Do not lease before monotonic ``when`` (a job arrived before it was due)."""
        self._pause_until = max(self._pause_until, when)

    # -- the loop --------------------------------------------------------------------

    def _run(self) -> None:
        shared = self.shared
        while not shared.closed.is_set():
            try:
                if self._up():
                    self._housekeeping()
                if shared.stopping.is_set():
                    self.quiet.set()
                    shared.closed.wait(0.05)
                elif self.down_since is None:
                    self._poll_once()
                else:
                    shared.stopping.wait(max(0.0, self._next_probe - time.monotonic()))
            except Exception:
                # Last resort: a consumer thread must outlive any bug in one iteration.
                log.exception("worker: consumer for backend %r failed; continuing",
                              self.backend.name)
                shared.stopping.wait(1.0)
            if self.skipped:
                self.quiet.set()
                shared.wake.set()
                return
        self.quiet.set()

    def _poll_once(self) -> None:
        shared = self.shared
        options = shared.options
        wait = self._pause_until - time.monotonic()
        if wait > 0:
            shared.stopping.wait(min(wait, options.poll_timeout))
            return
        # Idle: wait for the next job holding one slot (the other backends' consumers
        # may need the rest). Busy: take every free slot, lease what is there at once.
        taken = shared.slots.acquire(1 if self._idle else options.concurrency,
                                     self._slot_wait())
        if not taken:
            return
        if shared.stopping.is_set():  # stopped while we waited: no lease may escape the drain
            shared.slots.release(taken)
            return
        deliveries, error = self._reserve(taken, self._wait_for_first() if self._idle else 0.0)
        # Give back what the lease did not fill before anything else (a dead broker's
        # backoff included): the other backends' consumers may be waiting for it.
        shared.slots.release(taken - len(deliveries))
        if error is not None:
            self._outage(error)
            return
        self._idle = not deliveries
        if deliveries:
            self._dispatch(deliveries)

    def _slot_wait(self) -> float:
        # Slots are first come, first served: a waiter that times out loses its place,
        # so wait until housekeeping is due (at least poll_timeout), not one poll only.
        # Stopping closes the slots, which ends the wait at once.
        due = min(self._next_touch, self._next_recover) - time.monotonic()
        return max(self.shared.options.poll_timeout, due)

    def _wait_for_first(self) -> float:
        # A burst worker ends only after an empty poll that started once the last job
        # finished: short polls let it notice within a few ms instead of poll_timeout.
        options = self.shared.options
        return min(options.poll_timeout, 0.05) if options.burst else options.poll_timeout

    def _reserve(self, limit: int, timeout: float) -> tuple[list[Delivery], BackendError | None]:
        """Lease up to ``limit`` jobs; the error instead when the broker failed."""
        shared = self.shared
        epoch = shared.tracker.epoch
        try:
            deliveries = self.backend.reserve_many(shared.options.queues, limit, timeout)
        except BackendError as exc:
            return [], exc
        self._resumed()
        if not deliveries:
            self.idle_epoch = epoch
            shared.wake.set()
        return deliveries, None

    def _dispatch(self, deliveries: list[Delivery]) -> None:
        """Claim the runnable attempts in one dedup round trip, then feed the pool."""
        shared = self.shared
        jobs = [Job(delivery, self.backend, self) for delivery in deliveries]
        runnable = [job for job in jobs
                    if job.delivery.envelope is not None and shared.runnable(job.delivery.envelope)]
        if runnable:
            claims = shared.guard.claim_many([job.delivery.envelope for job in runnable
                                              if job.delivery.envelope is not None],
                                             self.backend.settings.lease_timeout)
            for job, claim in zip(runnable, claims, strict=True):
                job.claim = claim
        shared.tracker.add(jobs)
        for job in jobs:
            shared.work.put(job)

    # -- outages ---------------------------------------------------------------------

    def _outage(self, exc: BackendError) -> None:
        """Log the first failure only; schedule the next probe after the backoff.

        Never called holding a pool slot: the loop waits the backoff out without one."""
        options = self.shared.options
        now = time.monotonic()
        if self.down_since is None:
            self.down_since = now
            if options.burst and self.polls_ok == 0:
                log.warning("worker: backend %r unreachable at start; burst mode skips it: %s",
                            self.backend.name, exc)
                self.skipped = True
                return
            log.warning("worker: backend %r unavailable, will keep retrying: %s",
                        self.backend.name, exc)
        elif options.burst and now - self.down_since > options.burst_outage_wait:
            log.warning("worker: backend %r down for %.0f s; burst mode stops waiting for it",
                        self.backend.name, now - self.down_since)
            self.skipped = True
            return
        self._next_probe = now + self._reconnect.next()

    def _up(self) -> bool:
        """Whether the broker answers. While it is down, ping it once the backoff has
        passed: a consumer whose pool slots are all busy never gets to ``reserve``, and
        until the outage ends its running jobs' leases would not be renewed."""
        if self.down_since is None:
            return True
        if time.monotonic() < self._next_probe:
            return False
        try:
            self.backend.ping()
        except BackendError as exc:
            self._outage(exc)
            return False
        self._resumed()
        return True

    def _resumed(self) -> None:
        self.polls_ok += 1
        if self.down_since is not None:
            log.info("worker: backend %r is back after %.1f s; consuming again",
                        self.backend.name, time.monotonic() - self.down_since)
            self.down_since = None
            self._reconnect.reset()
            # Leases of jobs whose worker died during the outage are due back now.
            self._next_recover = 0.0

    # -- lease upkeep ----------------------------------------------------------------

    def _housekeeping(self) -> None:
        """Touch leases and recover orphans when due. Only while the broker is up: a
        dead one would only make these calls hang for their timeout."""
        now = time.monotonic()
        if now >= self._next_touch:
            self._next_touch = now + self._touch_interval
            self._touch()
        if now >= self._next_recover and not self.shared.stopping.is_set():
            self._next_recover = now + self._recover_interval
            self._recover()

    def _touch(self) -> None:
        jobs = self.shared.tracker.of(self)
        try:
            self.backend.touch([job.delivery for job in jobs])
        except BackendError as exc:
            log.debug("worker: touch on %r failed: %s", self.backend.name, exc)
        self.shared.guard.renew([job.delivery.envelope for job in jobs
                                 if job.delivery.envelope is not None],
                                self.backend.settings.lease_timeout)
        if self._on_overrun is not None:
            wall = time.time()
            for job in jobs:
                if job.deadline is not None and wall > job.deadline and not job.warned:
                    job.warned = True
                    self._on_overrun(job)

    def _recover(self) -> None:
        try:
            moved = self.backend.recover()
        except BackendError as exc:
            log.debug("worker: recover on %r failed: %s", self.backend.name, exc)
            return
        if moved:
            log.info("worker: returned %d orphaned job(s) to backend %r", moved,
                     self.backend.name)

