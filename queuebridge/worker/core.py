"""The worker: one consumer per backend feeding a bounded pool, until stopped."""

from __future__ import annotations

import logging
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from types import FrameType

from queuebridge.bridge import Bridge
from queuebridge.dedup import FLUSH_EVERY
from queuebridge.errors import BackendError, ConfigError, QueueBridgeError
from queuebridge.heartbeat import Heartbeat, WorkerInfo
from queuebridge.state import WorkerState, open_worker_state
from queuebridge.worker.consumer import Consumer, Shared
from queuebridge.worker.guard import DedupGuard
from queuebridge.worker.options import Counters, WorkerOptions, WorkerStats
from queuebridge.worker.processes import ProcessPool
from queuebridge.worker.runner import Runner
from queuebridge.worker.tracking import Job, Slots, Tracker

__all__ = ["Worker"]

log = logging.getLogger("queuebridge.worker")
_TICK = 0.1
"""How often the main loop looks at signals and burst completion."""


class Worker:
    """Consumes every backend of ``bridge`` and runs registered tasks.

    ``run()`` blocks until :meth:`stop`, a signal, or (``burst``) empty queues.
    Options default to the bridge's ``[queuebridge.worker]`` settings.
    """

    def __init__(self, bridge: Bridge, options: WorkerOptions | None = None) -> None:
        self.bridge = bridge
        self.options = options or WorkerOptions.from_settings(bridge.settings.worker)
        self._app = self.options.app or bridge.settings.app
        if self.options.pool == "processes" and not self._app:
            raise ConfigError("worker.pool", "pool = 'processes' needs the app as "
                                             "'module:attr' (queuebridge.app, or "
                                             "WorkerOptions.app) so child processes can "
                                             "import its tasks")
        self.name = self.options.name or f"{socket.gethostname()}:{os.getpid()}"
        self._counters = Counters()
        self._tracker = Tracker()
        self._stopping = threading.Event()
        self._closed = threading.Event()
        self._wake = threading.Event()
        self._hard = False
        self._signals = 0
        self._ran = False

    @property
    def stats(self) -> WorkerStats:
        """A snapshot of the counters: processed, succeeded, failed, retried, ..."""
        return self._counters.snapshot()

    def stop(self, graceful: bool = True) -> None:
        """Stop leasing; with ``graceful`` let in-flight jobs finish within the grace
        period, else hand their leases back at once. Thread-safe."""
        if not graceful:
            self._hard = True
        self._stopping.set()
        self._wake.set()

    # -- running ---------------------------------------------------------------------

    def run(self) -> int:
        """Consume until stopped; return the exit code (0). Installs SIGTERM/SIGINT
        handlers when called on the main thread: the first stops gracefully, the
        second at once. Raises :class:`QueueBridgeError` if called twice, and
        :class:`ConfigError` when the state store or the process pool cannot start."""
        if self._ran:
            raise QueueBridgeError("a Worker runs once; build a new one")
        self._ran = True
        state = self._open_state()
        try:
            processes = self._start_processes(state)
        except BaseException:
            if state is not None:
                state.close()
            raise
        try:
            self._run(state, processes)
        finally:
            if processes is not None:
                processes.close(1.0)  # busy children hold abandoned jobs: kill them
            if state is not None:
                state.close()
        log.info("worker %s: stopped; %s", self.name, self.stats)
        return 0

    def _run(self, state: WorkerState | None, processes: ProcessPool | None) -> None:
        options = self.options
        guard = DedupGuard(state.dedup if state else None, self.name, options.dedup_ttl,
                           state.checkpoints if state else None)
        shared = Shared(options, self._tracker, Slots(options.concurrency),
                        queue.SimpleQueue(), self._stopping, self._closed, self._wake,
                        guard, runnable=lambda env: False)
        runner = Runner(self.bridge, shared, self._counters, processes)
        shared.runnable = runner.runnable
        consumers = [Consumer(backend, shared, self._on_overrun)
                     for backend in self.bridge.backends.values()]
        pool = [threading.Thread(target=_pool_loop, args=(shared.work, runner),
                                 name=f"qb-pool-{index}", daemon=True)
                for index in range(options.concurrency)]
        heartbeat = self._heartbeat(state)
        restore = self._install_signals()
        try:
            for thread in pool:
                thread.start()
            for consumer in consumers:
                consumer.start()
            if heartbeat is not None:
                heartbeat.start()
            log.info("worker %s: consuming %s from %s with %d %s", self.name,
                     ", ".join(options.queues), ", ".join(self.bridge.backends),
                     options.concurrency, options.pool)
            self._main_loop(consumers, guard)
            shared.slots.close()  # a consumer waiting for a slot stops waiting now
            self._wait_quiet(consumers)
            self._drain(guard)
        finally:
            # Before exiting (burst end, stop, or an error): every finished job is acked.
            self._close_ackers(consumers)
            self._shutdown(shared, consumers, pool)
            if heartbeat is not None:
                heartbeat.stop(self.name)
            restore()

    def _main_loop(self, consumers: list[Consumer], guard: DedupGuard) -> None:
        next_check = 0.0
        while not self._stopping.is_set():
            self._wake.wait(_TICK)
            self._wake.clear()
            self._take_signals()
            # Finished attempts become visible to other workers within ~a tick.
            guard.flush(FLUSH_EVERY)
            # Rate-limited: the check may ask every backend for its queue depths.
            if self.options.burst and time.monotonic() >= next_check:
                next_check = time.monotonic() + min(_TICK / 5, self.options.poll_timeout)
                if self._burst_done(consumers):
                    log.info("worker %s: burst finished, every queue is empty", self.name)
                    self._stopping.set()

    def _burst_done(self, consumers: list[Consumer]) -> bool:
        """True when nothing is in flight, every live consumer's last poll (started
        after the last job finished) came back empty, and no queue holds a job."""
        if self._tracker.count():
            return False
        epoch = self._tracker.epoch
        live = [consumer for consumer in consumers if not consumer.skipped]
        if any(consumer.idle_epoch != epoch for consumer in live):
            return False
        try:
            # Delayed jobs (retries with backoff) count in depth: wait for them.
            return not any(consumer.backend.depth(name)
                           for consumer in live for name in self.options.queues)
        except BackendError:
            return False

    def _wait_quiet(self, consumers: list[Consumer]) -> None:
        """Wait for every consumer to leave ``reserve``: a lease taken after the drain
        started would otherwise escape it."""
        for consumer in consumers:
            limit = self.options.poll_timeout + consumer.backend.settings.timeout + 1.0
            if not consumer.quiet.wait(limit):
                log.warning("worker %s: consumer for %r did not stop leasing within %.1f s",
                            self.name, consumer.backend.name, limit)

    def _drain(self, guard: DedupGuard) -> None:
        """Let in-flight jobs finish within the grace period, then hand back the rest."""
        deadline = time.monotonic() + self.options.grace_period
        if self._tracker.count():
            log.info("worker %s: stopping; waiting up to %.0f s for %d job(s)", self.name,
                     self.options.grace_period, self._tracker.count())
        while not self._hard:
            remaining = deadline - time.monotonic()
            if self._tracker.wait_empty(max(0.0, min(_TICK, remaining))) or remaining <= 0:
                break
            self._take_signals()
        self._return_leases(self._tracker.abandon(), guard)

    def _return_leases(self, jobs: list[Job], guard: DedupGuard) -> None:
        for job in jobs:
            envelope = job.delivery.envelope
            try:
                if envelope is not None:
                    guard.release(envelope)
                    job.backend.retry(job.delivery, envelope)
                    self._counters.add("returned")
            except BackendError as exc:
                log.warning("worker %s: could not return job %s (%s); it will be recovered "
                            "when its lease expires", self.name, job.delivery.job_id, exc)
        if jobs:
            log.warning("worker %s: handed back %d unfinished job(s)", self.name, len(jobs))

    def _close_ackers(self, consumers: list[Consumer]) -> None:
        for consumer in consumers:
            consumer.acker.close(consumer.backend.settings.timeout + 1.0)

    def _shutdown(self, shared: Shared, consumers: list[Consumer],
                  pool: list[threading.Thread]) -> None:
        self._stopping.set()
        self._closed.set()
        shared.slots.close()
        for _ in pool:
            shared.work.put(None)
        limit = time.monotonic() + self.options.poll_timeout + 1.0
        for consumer in consumers:
            consumer.thread.join(max(0.0, limit - time.monotonic()))
        for thread in pool:
            # A thread still inside an abandoned task is a daemon: it cannot hold us up.
            thread.join(max(0.0, min(0.5, limit - time.monotonic())))

    def _open_state(self) -> WorkerState | None:
        location = self.options.state
        if location is None:
            return None
        return open_worker_state(str(location), self.bridge.plugins)

    def _start_processes(self, state: WorkerState | None) -> ProcessPool | None:
        if self.options.pool != "processes":
            return None
        location = None if state is None else str(self.options.state)
        return ProcessPool(self._app, location, self.options.concurrency)

    def _heartbeat(self, state: WorkerState | None) -> Heartbeat | None:
        if state is None:
            return None
        info = WorkerInfo(self.name, socket.gethostname(), os.getpid(),
                          tuple(self.bridge.backends), self.options.queues,
                          interval=self.options.heartbeat_interval)
        return Heartbeat(state.heartbeats,
                         lambda: replace(info, current_jobs=tuple(self._tracker.job_ids())),
                         self.options.heartbeat_interval)

    def _on_overrun(self, job: Job) -> None:
        log.warning("worker %s: job %s (%s) is past its soft timeout and still running",
                    self.name, job.delivery.job_id,
                    job.delivery.envelope.task if job.delivery.envelope else "?")

    # -- signals ---------------------------------------------------------------------

    def _install_signals(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def on_signal(signum: int, frame: FrameType | None) -> None:
            # Only a counter: taking a lock here could deadlock with the main loop.
            self._signals += 1

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore

    def _take_signals(self) -> None:
        if self._signals >= 2:
            if not self._hard:
                log.warning("worker %s: second signal, stopping now", self.name)
            self.stop(graceful=False)
        elif self._signals == 1 and not self._stopping.is_set():
            log.info("worker %s: signal received, finishing in-flight jobs", self.name)
            self.stop(graceful=True)


def _pool_loop(work: queue.SimpleQueue[Job | None], runner: Runner) -> None:
    while (job := work.get()) is not None:
        runner.handle(job)
