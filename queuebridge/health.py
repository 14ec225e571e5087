"""Backend health: who is up, who is down, and the transitions between the two.

:class:`HealthBoard` keeps one record per backend, in configured order, and turns
send and probe outcomes into transitions (:mod:`queuebridge.events`). Every state
change happens under one lock, so each transition is seen -- and emitted -- by
exactly one thread, however many threads enqueue at once. :class:`Monitor` is the
thread that probes down backends with capped exponential backoff and jitter; a
backend comes back only after ``recovery_probes`` consecutive good probes.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from queuebridge.errors import QueueBridgeError
from queuebridge.events import BackendDown, BackendUp, Failback, Failover, TransitionEvent
from queuebridge.redact import redact_text
from queuebridge.settings import RouterSettings

__all__ = ["BackendHealth", "BackgroundLoop", "HealthBoard", "Monitor"]

log = logging.getLogger("queuebridge.health")
_IDLE_WAIT = 60.0
"""Longest monitor sleep when nothing is down (it is woken when something goes down)."""


@dataclass(frozen=True, slots=True)
class BackendHealth:
    """A point-in-time view of one backend's health, for status output."""

    name: str
    up: bool
    since: float
    """Unix time of the last up/down transition (or of router start)."""
    latency: float | None
    """Seconds of the last successful send or probe; ``None`` before the first."""
    consecutive_failures: int
    consecutive_successes: int
    """Good sends while up; good probes (towards ``recovery_probes``) while down."""
    last_error: str
    """The last failure, credentials redacted; empty if none yet."""
    down_count: int
    """How many times the circuit opened since the router started."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dataclasses.asdict(self)


@dataclass(slots=True)
class _Record:
    name: str
    rank: int
    up: bool = True
    since: float = dataclasses.field(default_factory=time.time)
    latency: float | None = None
    failures: int = 0
    successes: int = 0
    good_probes: int = 0
    """Kept apart from ``successes``: only the monitor writes it, under the lock."""
    last_error: str = ""
    down_count: int = 0
    interval: float = 0.0
    next_probe: float = 0.0

    def view(self) -> BackendHealth:
        successes = self.successes if self.up else self.good_probes
        return BackendHealth(self.name, self.up, self.since, self.latency, self.failures,
                             successes, self.last_error, self.down_count)


class HealthBoard:
    """Health records of every backend, in configured order. Thread-safe.

    ``emit`` receives each transition exactly once, in the order they happened, and
    never while the board's lock is held (a slow notifier cannot stall enqueues).
    ``fallback`` names where jobs go when nothing is up: ``"spool"`` or ``"none"``.
    """

    def __init__(self, names: Sequence[str], settings: RouterSettings,
                 emit: Callable[[TransitionEvent], None], *, fallback: str = "none") -> None:
        self._records = {name: _Record(name, rank) for rank, name in enumerate(names)}
        self._order = tuple(self._records.values())
        self._settings = settings
        self._emit = emit
        self._fallback = fallback
        self._lock = threading.Lock()
        self._emit_lock = threading.RLock()
        self._pending: deque[TransitionEvent] = deque()
        self._random = random.Random()
        self.live: tuple[str, ...] = tuple(names)
        """Names of the up backends in configured order; replaced (never mutated) on
        each transition, so readers need no lock."""

    # -- reading ---------------------------------------------------------------------

    @property
    def preferred(self) -> str:
        """The first up backend in configured order, else the fallback."""
        live = self.live
        return live[0] if live else self._fallback

    def snapshot(self) -> list[BackendHealth]:
        """Every backend's health, in configured order."""
        with self._lock:
            return [record.view() for record in self._order]

    def is_up(self, name: str) -> bool:
        """True while ``name``'s circuit is closed."""
        return self._records[name].up

    @property
    def any_down(self) -> bool:
        """True when at least one backend is down."""
        return len(self.live) < len(self._order)

    # -- send outcomes -----------------------------------------------------------------

    def send_ok(self, name: str, latency: float) -> None:
        """A send to ``name`` succeeded. Never brings a down backend up: only probes do."""
        record = self._records[name]
        # The fast path takes no lock: these counters are for status output and a lost
        # increment under contention is harmless. Resetting failures (which the
        # threshold reads) does take it.
        record.latency = latency
        record.successes += 1
        if record.failures:
            with self._lock:
                record.failures = 0

    def send_failed(self, name: str, error: str, *, unavailable: bool) -> None:
        """A send to ``name`` failed. Opens the circuit once the consecutive failures reach
        ``failure_threshold`` (``unavailable``) or ``error_threshold`` (any other error)."""
        threshold = (self._settings.failure_threshold if unavailable
                     else self._settings.error_threshold)
        record = self._records[name]
        with self._lock:
            self._count_failure(record, error)
            if record.up and record.failures >= threshold:
                self._mark_down(record)
        self._flush()

    # -- probe outcomes ----------------------------------------------------------------

    def due_probes(self) -> list[str]:
        """Names of down backends whose next probe is due now."""
        now = time.monotonic()
        with self._lock:
            return [r.name for r in self._order if not r.up and r.next_probe <= now]

    def next_probe_in(self) -> float | None:
        """Seconds until the next probe is due (0 if overdue), ``None`` if nothing is down."""
        now = time.monotonic()
        with self._lock:
            due = [r.next_probe for r in self._order if not r.up]
        return max(0.0, min(due) - now) if due else None

    def probe_ok(self, name: str, latency: float) -> bool:
        """A probe of a down backend answered; after ``recovery_probes`` in a row, it is up.
        Return True if this probe brought it up."""
        record = self._records[name]
        with self._lock:
            if record.up:
                return False
            record.latency = latency
            record.failures = 0
            record.good_probes += 1
            if record.good_probes >= self._settings.recovery_probes:
                self._mark_up(record)
            else:
                # Confirmation probes follow at the base interval: recovery stays prompt.
                record.interval = self._settings.probe_interval
                record.next_probe = time.monotonic() + self._jittered(record.interval)
            came_up = record.up
        self._flush()
        return came_up

    def probe_failed(self, name: str, error: str) -> None:
        """A probe of a down backend failed: reset the good-probe count, back off."""
        record = self._records[name]
        with self._lock:
            if record.up:
                return
            self._count_failure(record, error)
            record.interval = min(record.interval * 2, self._settings.probe_max_interval)
            record.next_probe = time.monotonic() + self._jittered(record.interval)

    # -- transitions (lock held) -------------------------------------------------------

    def _count_failure(self, record: _Record, error: str) -> None:
        record.failures += 1
        record.successes = 0
        record.good_probes = 0
        record.last_error = redact_text(error)

    def _mark_down(self, record: _Record) -> None:
        before = self.preferred
        record.up = False
        record.since = time.time()
        record.down_count += 1
        record.interval = self._settings.probe_interval
        record.next_probe = time.monotonic() + self._jittered(record.interval)
        self._pending.append(BackendDown(record.since, record.name, record.last_error))
        self._relink(before, record.last_error)

    def _mark_up(self, record: _Record) -> None:
        before = self.preferred
        now = time.time()
        downtime, record.since = now - record.since, now
        record.up = True
        record.successes = record.good_probes = 0
        self._pending.append(BackendUp(now, record.name, downtime))
        self._relink(before, "")

    def _relink(self, before: str, reason: str) -> None:
        """Recompute ``live``; queue a Failover/Failback if the preferred backend moved."""
        self.live = tuple(r.name for r in self._order if r.up)
        after = self.preferred
        if after == before:
            return
        now = time.time()
        if self._rank(after) > self._rank(before):
            self._pending.append(Failover(now, before, after, reason))
        else:
            self._pending.append(Failback(now, before, after))

    def _rank(self, name: str) -> int:
        record = self._records.get(name)
        return record.rank if record is not None else len(self._order)

    def _jittered(self, delay: float) -> float:
        return delay * (1.0 + self._settings.probe_jitter * self._random.random())

    def _flush(self) -> None:
        # Events leave in the order they were queued; whoever holds the emit lock
        # delivers everything pending, so none is sent twice or lost.
        with self._emit_lock:
            while self._pending:
                self._emit(self._pending.popleft())


class BackgroundLoop:
    """A daemon thread that calls :meth:`_step` until stopped.

    ``_step`` does one round of work and returns how many seconds to sleep before
    the next one; :meth:`wake` cuts the sleep short, :meth:`stop` ends the loop.
    Subclasses set their own attributes, then call ``super().__init__(name)``,
    which starts the thread.
    """

    def __init__(self, name: str) -> None:
        self._wake = threading.Event()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Run the next round now."""
        self._wake.set()

    def stop(self, timeout: float) -> None:
        """End the loop after the round in flight; wait up to ``timeout`` seconds for it
        (the thread is a daemon, so one stuck in a broker call cannot block exit)."""
        self._stopped = True
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopped:
            # Clear before the round: a wake() during it is not lost.
            self._wake.clear()
            delay = self._step()
            if delay > 0:
                self._wake.wait(delay)

    def _step(self) -> float:
        raise NotImplementedError


class Monitor(BackgroundLoop):
    """Probes down backends until they are trusted again.

    ``probe(name)`` pings the backend and returns its latency, raising a
    :class:`~queuebridge.errors.QueueBridgeError` on failure. ``on_up`` is called
    after any probe round that brought a backend up.
    """

    def __init__(self, board: HealthBoard, probe: Callable[[str], float],
                 on_up: Callable[[], None]) -> None:
        self._board = board
        self._probe = probe
        self._on_up = on_up
        super().__init__("queuebridge-monitor")

    def _step(self) -> float:
        delay = self._board.next_probe_in()
        if delay is None:
            return _IDLE_WAIT
        if delay == 0:
            self._probe_due()
        return delay

    def _probe_due(self) -> None:
        came_up = False
        for name in self._board.due_probes():
            if self._stopped:
                return
            try:
                latency = self._probe(name)
            except QueueBridgeError as exc:
                self._board.probe_failed(name, str(exc))
                continue
            came_up = self._board.probe_ok(name, latency) or came_up
        if came_up:
            self._on_up()
