"""Batched acks: the pool hands finished jobs to one acker per backend, which acks them
with one ``ack_many`` per batch instead of one broker round trip per job.

The acker does not wait to fill a batch: it acks whatever has finished, and the jobs
that finish while that round trip is in flight form the next batch (group commit).
So an idle worker acks a lone job at once, and a busy one amortises the round trip
over as many jobs as finished during it.

A job stays in flight (its pool slot taken, counted by the tracker) until its ack
was attempted, so bounded prefetch still holds on the broker — never more than
``concurrency`` leases unacked — and a stop or a burst end waits for pending acks.

Only backends declaring ``Capabilities.batch_ack`` are acked this way. For the others
``ack_many`` is a loop of single acks, and one thread looping over them would only
serialise what the pool threads do in parallel (the filesystem broker's unlinks): the
pool thread that ran the job acks it at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from queuebridge.backend import Backend
from queuebridge.errors import BackendError, LeaseLost
from queuebridge.worker.tracking import Job

__all__ = ["Acker"]

log = logging.getLogger("queuebridge.worker")
MAX_BATCH = 256
"""Most deliveries per ``ack_many`` call (keeps one script call's arguments bounded)."""


class Acker:
    """Acks one backend's finished jobs in batches, on its own thread.

    ``finished(job)`` is called for every job once its ack was attempted, whatever
    the outcome: an ack that failed leaves the lease to ``recover``, and the dedup
    store (which recorded the attempt as done when the task returned) makes the
    redelivery an acked duplicate.
    """

    def __init__(self, backend: Backend, finished: Callable[[Job], None]) -> None:
        self.backend = backend
        self._finished = finished
        self._cond = threading.Condition(threading.Lock())
        self._pending: list[Job] = []
        self._closing = False
        self._batching = backend.capabilities.batch_ack
        self.thread = threading.Thread(target=self._run, name=f"qb-acker-{backend.name}",
                                       daemon=True)

    def start(self) -> None:
        """Start the acker thread (none for a backend without batch acks)."""
        if self._batching:
            self.thread.start()

    def submit(self, job: Job) -> None:
        """Ack ``job`` soon. Without batch acks, or after :meth:`close` (a pool thread
        finishing late), the ack is made at once, in the caller's thread."""
        with self._cond:
            if self._batching and not self._closing:
                self._pending.append(job)
                self._cond.notify()
                return
        self._ack([job])

    def close(self, timeout: float) -> None:
        """Ack everything submitted so far, then stop; wait up to ``timeout`` seconds.
        Idempotent."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self.thread.is_alive():
            self.thread.join(timeout)
        elif self.thread.ident is None:
            while batch := self._take():  # never started: nothing else will ack these
                self._ack(batch)
        if self.thread.is_alive():
            log.warning("worker: acks on backend %r still pending after %.1f s; their "
                        "leases will be recovered", self.backend.name, timeout)

    # -- the loop --------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                batch = self._take_locked()
            if not batch:
                return  # closing, and everything submitted was acked
            try:
                self._ack(batch)
            except Exception:
                # Last resort: the acker must outlive a bug, or acks would pile up.
                log.exception("worker: acker for backend %r failed; continuing",
                              self.backend.name)

    def _take(self) -> list[Job]:
        with self._cond:
            return self._take_locked()

    def _take_locked(self) -> list[Job]:
        batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
        return batch

    def _ack(self, jobs: list[Job]) -> None:
        if not jobs:
            return
        try:
            self.backend.ack_many([job.delivery for job in jobs])
        except LeaseLost as exc:
            log.warning("worker: %s; those jobs ran (with a dedup store, a redelivery of "
                        "one is acked as a duplicate)", exc)
        except BackendError as exc:
            log.warning("worker: %d job(s) ran but their acks failed (%s); their leases "
                        "are left to be recovered", len(jobs), exc)
        finally:
            for job in jobs:
                self._finished(job)
