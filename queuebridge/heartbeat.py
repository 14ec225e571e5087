"""The worker registry: live workers announce themselves; silent ones are dead.

Each worker writes a :class:`WorkerInfo` every ``heartbeat_interval`` seconds.
:func:`list_workers` (behind ``queuebridge workers``) reads them back; a worker whose
last heartbeat is older than a few intervals is reported dead (it was killed, or its
host is gone). Its leases are returned by the backends' ``recover``, which every live
worker calls periodically, so nobody has to requeue by hand.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from queuebridge.dedup import StateDatabase
from queuebridge.errors import QueueBridgeError

__all__ = ["Heartbeat", "HeartbeatStore", "SQLiteHeartbeats", "WorkerInfo", "list_workers"]

log = logging.getLogger("queuebridge.worker")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS workers (
    name           TEXT PRIMARY KEY,
    info           TEXT NOT NULL,
    last_heartbeat REAL NOT NULL
) WITHOUT ROWID;
"""
DEAD_AFTER_INTERVALS = 3
"""A worker silent for this many heartbeat intervals is considered dead."""


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """What one worker reports about itself."""

    name: str
    host: str
    pid: int
    backends: tuple[str, ...]
    queues: tuple[str, ...]
    current_jobs: tuple[str, ...] = ()
    last_heartbeat: float = 0.0
    interval: float = 5.0
    started_at: float = field(default_factory=time.time)

    @property
    def alive(self) -> bool:
        """False once the worker missed several heartbeats."""
        return time.time() - self.last_heartbeat < DEAD_AFTER_INTERVALS * self.interval

    def to_json(self) -> str:
        """Serialise (without ``last_heartbeat``, which the store keeps as a column)."""
        return json.dumps({"name": self.name, "host": self.host, "pid": self.pid,
                           "backends": list(self.backends), "queues": list(self.queues),
                           "current_jobs": list(self.current_jobs),
                           "interval": self.interval, "started_at": self.started_at})

    @classmethod
    def from_json(cls, text: str, last_heartbeat: float) -> WorkerInfo:
        """Parse what :meth:`to_json` wrote."""
        data = json.loads(text)
        return cls(name=data["name"], host=data["host"], pid=data["pid"],
                   backends=tuple(data["backends"]), queues=tuple(data["queues"]),
                   current_jobs=tuple(data["current_jobs"]), last_heartbeat=last_heartbeat,
                   interval=data["interval"], started_at=data["started_at"])


class HeartbeatStore(ABC):
    """Where heartbeats go. SQLite on one host; Redis (with the RQ adapter) for many."""

    @abstractmethod
    def beat(self, info: WorkerInfo) -> None:
        """Record ``info`` with the current time as its last heartbeat."""

    @abstractmethod
    def remove(self, name: str) -> None:
        """A worker stopped cleanly: drop it from the registry."""

    @abstractmethod
    def workers(self) -> list[WorkerInfo]:
        """Every registered worker, live or dead, by name."""

    def close(self) -> None:
        """Release resources. Idempotent."""


class SQLiteHeartbeats(HeartbeatStore):
    """Heartbeats in the worker state database (one host)."""

    def __init__(self, path: Path) -> None:
        self._db = StateDatabase(Path(path), _SCHEMA)

    def beat(self, info: WorkerInfo) -> None:
        self._db.execute("INSERT OR REPLACE INTO workers VALUES (?, ?, ?)",
                         (info.name, info.to_json(), time.time()))

    def remove(self, name: str) -> None:
        self._db.execute("DELETE FROM workers WHERE name = ?", (name,))

    def workers(self) -> list[WorkerInfo]:
        rows = self._db.execute("SELECT info, last_heartbeat FROM workers ORDER BY name")
        return [WorkerInfo.from_json(text, beat) for text, beat in rows.fetchall()]

    def prune(self, older_than: float) -> int:
        """Forget workers silent for ``older_than`` seconds; return how many."""
        cursor = self._db.execute("DELETE FROM workers WHERE last_heartbeat < ?",
                                  (time.time() - older_than,))
        return cursor.rowcount

    def close(self) -> None:
        self._db.close()


def list_workers(path: Path) -> list[WorkerInfo]:
    """The workers registered in the state database at ``path`` (check ``.alive``)."""
    store = SQLiteHeartbeats(path)
    try:
        return store.workers()
    finally:
        store.close()


class Heartbeat:
    """A thread writing this worker's :class:`WorkerInfo` until stopped."""

    def __init__(self, store: HeartbeatStore, snapshot: Callable[[], WorkerInfo],
                 interval: float) -> None:
        self._store = store
        self._snapshot = snapshot
        self._interval = interval
        self._stop = threading.Event()
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="qb-heartbeat", daemon=True)

    def start(self) -> None:
        """Write the first heartbeat now, then one per interval."""
        self._thread.start()

    def stop(self, name: str) -> None:
        """Stop beating and remove ``name`` from the registry (a clean exit)."""
        self._stop.set()
        self._thread.join(self._interval + 1.0)
        self._call(lambda: self._store.remove(name))

    def _run(self) -> None:
        while True:
            self._call(lambda: self._store.beat(self._snapshot()))
            if self._stop.wait(self._interval):
                return

    def _call(self, action: Callable[[], None]) -> None:
        try:
            action()
        except QueueBridgeError as exc:
            if not self._failing:
                log.warning("worker: heartbeat store failing (logged once): %s", exc)
            self._failing = True
        else:
            self._failing = False
