"""Running one leased job and reporting its outcome to the broker."""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import replace
from typing import Any

from queuebridge.bridge import Bridge
from queuebridge.context import CheckpointAccess, JobContext, job_context
from queuebridge.dedup import Claim
from queuebridge.envelope import Envelope
from queuebridge.errors import BackendError, JobTimeout, QueueBridgeError
from queuebridge.registry import Task
from queuebridge.worker.backoff import retry_delay
from queuebridge.worker.consumer import Shared
from queuebridge.worker.guard import CheckpointUse
from queuebridge.worker.options import Counters
from queuebridge.worker.processes import ProcessPool, RemoteError
from queuebridge.worker.tracking import Job

__all__ = ["Runner"]

log = logging.getLogger("queuebridge.worker")


class Runner:
    """Turns a :class:`Job` into a task call and an ack, retry or dead-letter.

    Nothing here raises into the pool thread: a broker that fails while an outcome is
    reported leaves the lease in place, and the backend's ``recover`` hands the job out
    again (at-least-once; the dedup store stops a finished attempt from re-running).
    """

    def __init__(self, bridge: Bridge, shared: Shared, counters: Counters,
                 processes: ProcessPool | None = None) -> None:
        self.bridge = bridge
        self.options = shared.options
        self.counters = counters
        self.tracker = shared.tracker
        self.release = shared.release
        self.guard = shared.guard
        self.checkpoints: CheckpointAccess | None = shared.guard.checkpoints
        self.processes = processes
        """With ``pool="processes"``, tasks run in its children instead of this thread."""

    def runnable(self, env: Envelope) -> bool:
        """Whether :meth:`handle` would run ``env`` now (its attempt needs a claim)."""
        return not env.is_delayed and env.task in self.bridge.registry

    def handle(self, job: Job) -> None:
        """Process ``job`` end to end, then free its pool slot (or let the acker free it
        once the job's ack was made)."""
        try:
            self._handle(job)
        except Exception:
            log.exception("worker: unexpected error handling job %s; its lease is left to "
                          "be recovered", job.delivery.job_id)
        finally:
            if not job.ack_pending:
                self.release(job)

    def _handle(self, job: Job) -> None:
        delivery = job.delivery
        env = delivery.envelope
        if job.state != "leased":
            return  # handed back while it waited for a pool thread
        if env is None:
            self.dead_letter(job, f"malformed message: {delivery.problem}")
        elif env.is_delayed:
            self._return_early(job, env)
        elif env.task not in self.bridge.registry:
            self.dead_letter(job, f"unknown task {env.task!r}")
        else:
            self._run(job, self.bridge.registry.get(env.task), env)

    # -- running ---------------------------------------------------------------------

    def _run(self, job: Job, task: Task[Any, Any], env: Envelope) -> None:
        claim = job.claim or self.guard.claim(env, job.backend.settings.lease_timeout)
        if claim is Claim.CLAIMED:
            self._attempt(job, task, env)
        elif claim is Claim.DONE:
            self._duplicate(job, env)
        elif self.tracker.settle(job):
            # Running elsewhere (the same job on another backend, or a worker that may
            # have died): hand it back for a little later; once that run is done this
            # delivery is acked as a duplicate, and a dead owner's claim expires.
            log.info("worker: job %s attempt %d is running elsewhere; retrying it later",
                     env.id, env.attempt)
            later = replace(env, not_before=time.time() + min(5.0, self.options.poll_timeout))
            self._hand_back(job, later)

    def _attempt(self, job: Job, task: Task[Any, Any], env: Envelope) -> None:
        timeout = task.timeout
        job.deadline = time.time() + timeout if timeout is not None else None
        use = CheckpointUse(self.checkpoints) if self.checkpoints is not None else None
        ctx = JobContext(env.id, env.attempt, env.max_retries, job.delivery.backend,
                         job.delivery.queue, env.task, job.deadline, use)
        self.bridge.plugins.job_started(env, job.backend.name)
        self.counters.add("processed")
        start = time.perf_counter()
        error, value = self.invoke(task, env, ctx)
        duration = time.perf_counter() - start
        if error is None and job.deadline is not None and time.time() > job.deadline:
            error = JobTimeout(f"task {env.task!r} took {duration:.1f} s, past its "
                               f"timeout of {timeout} s")
        if not self.tracker.settle(job):
            return  # the worker stopped and already handed the lease back
        if error is None:
            # Done before the ack is handed off: once acked, the job may be the last one
            # a stopping worker waits for, and the state store is closed right after.
            self.guard.finish(env, succeeded=True, clear_checkpoint=use is not None and use.used)
            self._keep_result(job, env, value)
            self._succeed(job, env, duration)
        elif self._fail(job, task, env, error):
            self.guard.finish(env, succeeded=False)
        else:
            self.guard.release(env)

    def invoke(self, task: Task[Any, Any], env: Envelope, ctx: JobContext
               ) -> tuple[BaseException | None, Any]:
        """Call the task (in this thread, or a child process); return what it raised
        (or ``None``) and what it returned."""
        if self.processes is not None:
            return self.processes.invoke(task, env, ctx)
        try:
            with job_context(ctx):
                value = task.func(*env.args, **env.kwargs)
        except BaseException as exc:  # noqa: BLE001 - even SystemExit from a task is a failed attempt
            return exc, None
        return None, value

    def _keep_result(self, job: Job, env: Envelope, value: Any) -> None:
        """Store a return value where the backend keeps results; never fails the job."""
        if value is None or not job.backend.capabilities.results:
            return
        try:
            job.backend.store_result(env, value)
        except QueueBridgeError as exc:
            log.warning("worker: job %s succeeded but its result was not kept: %s", env.id, exc)

    # -- outcomes --------------------------------------------------------------------

    def _succeed(self, job: Job, env: Envelope, duration: float) -> None:
        self.counters.add("succeeded")
        self.bridge.plugins.job_succeeded(env, job.backend.name, duration)
        self._ack_later(job)

    def _ack_later(self, job: Job) -> None:
        """Hand the ack to the consumer's acker (batched). The pool is done with the job:
        this must be the last thing done for it."""
        job.ack_pending = True
        job.consumer.acker.submit(job)

    def _fail(self, job: Job, task: Task[Any, Any], env: Envelope, error: BaseException
              ) -> bool:
        """Retry or dead-letter; False when neither reached a broker."""
        kind = error.type_name if isinstance(error, RemoteError) else type(error).__name__
        summary = f"{kind}: {error}"
        self.counters.add("failed")
        self.bridge.plugins.job_failed(env, job.backend.name, summary)
        if env.retries_left > 0:
            return self._retry(job, task, env, summary)
        trace = (error.trace if isinstance(error, RemoteError)
                 else "".join(traceback.format_exception(error)).rstrip())
        return self._report_dead(job, f"{summary} (attempt {env.attempt} of "
                                      f"{env.max_retries + 1})\n{trace}")

    def _duplicate(self, job: Job, env: Envelope) -> None:
        if not self.tracker.settle(job):
            return
        self.counters.add("duplicates")
        log.info("worker: job %s attempt %d already done; acking the duplicate from %r",
                 env.id, env.attempt, job.backend.name)
        self.bridge.plugins.job_duplicate(env, job.backend.name)
        self._ack_later(job)

    def _retry(self, job: Job, task: Task[Any, Any], env: Envelope, summary: str) -> bool:
        base, cap = task.retry_backoff, task.retry_backoff_max
        delay = retry_delay(env.attempt,
                            self.options.retry_backoff if base is None else base,
                            self.options.retry_backoff_max if cap is None else cap)
        following = env.next_attempt(delay)
        landed = self._send_retry(job, following)
        if landed is None:
            return False
        self.counters.add("retried")
        log.info("worker: job %s (%s) failed attempt %d: %s; retrying in %.2f s via %s",
                 env.id, env.task, env.attempt, summary, delay, landed)
        self.bridge.plugins.job_retried(following, landed, delay)
        return True

    def _send_retry(self, job: Job, following: Envelope) -> str | None:
        """Put the next attempt on whichever backend is live; return where it went."""
        try:
            landed = self.bridge.router.send_many([following])[0]
        except QueueBridgeError as exc:
            log.warning("worker: router could not take the retry of job %s (%s); "
                        "retrying on backend %r", following.id, exc, job.backend.name)
        else:
            try:
                job.backend.ack(job.delivery)
            except BackendError as exc:
                # The next attempt is queued; the old one will come back and be
                # recognised as done by the dedup store.
                log.warning("worker: ack after retrying job %s failed: %s", following.id, exc)
            return landed
        try:
            job.backend.retry(job.delivery, following)
        except BackendError as exc:
            log.error("worker: could not retry job %s anywhere (%s); its lease is left to "
                      "be recovered", following.id, exc)
            return None
        return job.backend.name

    def dead_letter(self, job: Job, reason: str) -> None:
        """Dead-letter a job that never ran (malformed, unknown task)."""
        if self.tracker.settle(job):
            self._report_dead(job, reason)

    def _report_dead(self, job: Job, reason: str) -> bool:
        try:
            job.backend.dead_letter(job.delivery, reason)
        except BackendError as exc:
            log.error("worker: could not dead-letter job %s (%s); its lease is left to be "
                      "recovered", job.delivery.job_id, exc)
            return False
        self.counters.add("dead_lettered")
        log.warning("worker: dead-lettered job %s on %r: %s", job.delivery.job_id,
                    job.backend.name, reason.splitlines()[0])
        self.bridge.plugins.job_dead_lettered(job.delivery, reason)
        return True

    def _return_early(self, job: Job, env: Envelope) -> None:
        """A job handed out before its ``not_before`` goes back; its consumer pauses."""
        if self.tracker.settle(job) and self._hand_back(job, env):
            wait = min((env.not_before or 0) - time.time(), self.options.poll_timeout)
            job.consumer.pause_until(time.monotonic() + max(0.0, wait))

    def _hand_back(self, job: Job, env: Envelope) -> bool:
        """Release the lease without running the job; False if the broker refused."""
        try:
            job.backend.retry(job.delivery, env)
        except BackendError as exc:
            log.warning("worker: could not hand back job %s (its lease will be "
                        "recovered): %s", env.id, exc)
            return False
        self.counters.add("returned")
        return True
