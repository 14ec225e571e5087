"""The dedup store: a job attempt runs once even when it reached two brokers.

Before running an attempt, the worker *claims* ``(job id, attempt)``. A claim is
``running`` (with its owner and an expiry) until the attempt's outcome is reported,
then ``done`` for ``ttl`` seconds. A second delivery of a ``done`` attempt is acked
and counted as a duplicate; one whose claim is ``running`` under an unexpired owner is
left alone (its lease expires and is recovered, by which time the first run has
finished); an expired ``running`` claim (its worker died) is taken over.

Retries keep the job id, so the attempt number is part of the key: attempt 2 is a
new claim, while a stray redelivery of attempt 1 is recognised as done.

The store is advisory: when it cannot be reached the worker runs the job anyway
(at-least-once beats at-most-once). :class:`SQLiteDedupStore` is shared by worker
processes on one host; a Redis store for many hosts can implement the same ABC.
"""

from __future__ import annotations

import enum
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

from queuebridge.errors import QueueBridgeError

__all__ = ["Claim", "DedupStore", "SQLiteDedupStore", "StateDatabase", "StoreUnavailable",
           "connect"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS claims (
    job_id  TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    state   TEXT NOT NULL,
    owner   TEXT NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (job_id, attempt)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS claims_expires ON claims (expires);
"""


class Claim(enum.Enum):
    """The answer to :meth:`DedupStore.claim`."""

    CLAIMED = "claimed"
    """Run it: nobody else has, or its previous owner's claim expired."""
    DONE = "done"
    """Already finished: a duplicate."""
    BUSY = "busy"
    """Running elsewhere under a live claim: leave it."""


class StoreUnavailable(QueueBridgeError):
    """The store could not be read or written (the worker then runs the job anyway)."""


class DedupStore(ABC):
    """Claims on job attempts, with expiry. Implementations must be thread-safe and
    make :meth:`claim` atomic across every worker sharing the store."""

    @abstractmethod
    def claim(self, job_id: str, attempt: int, owner: str, lease: float) -> Claim:
        """Try to claim the attempt for ``owner`` for ``lease`` seconds."""

    @abstractmethod
    def renew(self, keys: Sequence[tuple[str, int]], owner: str, lease: float) -> None:
        """Extend ``owner``'s running claims on ``keys`` (long jobs keep their claim)."""

    @abstractmethod
    def finish(self, job_id: str, attempt: int, ttl: float) -> None:
        """The attempt's outcome was reported: remember it as done for ``ttl`` seconds."""

    @abstractmethod
    def release(self, job_id: str, attempt: int, owner: str) -> None:
        """Drop ``owner``'s running claim (the job was handed back unfinished)."""

    def close(self) -> None:
        """Release resources. Idempotent."""


def connect(path: Path, schema: str) -> sqlite3.Connection:
    """Open (creating) the worker state database at ``path`` in WAL mode.

    WAL lets several worker processes on the host read while one writes;
    ``synchronous=NORMAL`` skips the fsync per commit: losing the last claims in a
    power cut costs at most a duplicate run, which at-least-once allows anyway.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
    # Switching to WAL and creating tables take locks SQLite's busy handler does not
    # always wait for (two processes opening a fresh file at once): retry briefly.
    deadline = time.monotonic() + 5.0
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(schema)
            return conn
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                conn.close()
                raise
            time.sleep(0.01)


class StateDatabase:
    """The worker state file, with one SQLite connection per thread (a connection must
    not be shared mid-statement). Raises :class:`StoreUnavailable` on any error."""

    def __init__(self, path: Path, schema: str) -> None:
        self.path = path
        self._schema = schema
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def get(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = connect(self.path, self._schema)
            except (sqlite3.Error, OSError) as exc:
                raise StoreUnavailable(f"{self.path}: {exc}") from exc
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def execute(self, sql: str, params: Sequence[object] = ()) -> sqlite3.Cursor:
        """Run one statement (autocommit) on this thread's connection."""
        try:
            return self.get().execute(sql, params)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{self.path}: {exc}") from exc

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()


class SQLiteDedupStore(DedupStore):
    """Claims in a local SQLite file, shared by the worker processes of one host."""

    def __init__(self, path: Path) -> None:
        self._db = StateDatabase(Path(path), _SCHEMA)
        self._finished = 0

    def claim(self, job_id: str, attempt: int, owner: str, lease: float) -> Claim:
        now = time.time()
        # One statement, so two workers racing for the same attempt cannot both win.
        cursor = self._db.execute(
            "INSERT INTO claims VALUES (?, ?, 'running', ?, ?) "
            "ON CONFLICT (job_id, attempt) DO UPDATE SET state = 'running', "
            "owner = excluded.owner, expires = excluded.expires WHERE claims.expires <= ?",
            (job_id, attempt, owner, now + lease, now),
        )
        if cursor.rowcount == 1:
            return Claim.CLAIMED
        row = self._db.execute("SELECT state FROM claims WHERE job_id = ? AND attempt = ?",
                        (job_id, attempt)).fetchone()
        if row is None:  # expired and purged between the two statements
            return self.claim(job_id, attempt, owner, lease)
        return Claim.DONE if row[0] == "done" else Claim.BUSY

    def renew(self, keys: Sequence[tuple[str, int]], owner: str, lease: float) -> None:
        expires = time.time() + lease
        for job_id, attempt in keys:
            self._db.execute("UPDATE claims SET expires = ? WHERE job_id = ? AND attempt = ? "
                      "AND owner = ? AND state = 'running'", (expires, job_id, attempt, owner))

    def finish(self, job_id: str, attempt: int, ttl: float) -> None:
        self._db.execute("UPDATE claims SET state = 'done', expires = ? WHERE job_id = ? "
                  "AND attempt = ?", (time.time() + ttl, job_id, attempt))
        self._finished += 1
        if self._finished % 1000 == 0:
            self._db.execute("DELETE FROM claims WHERE expires < ?", (time.time(),))

    def release(self, job_id: str, attempt: int, owner: str) -> None:
        self._db.execute("DELETE FROM claims WHERE job_id = ? AND attempt = ? AND owner = ? "
                  "AND state = 'running'", (job_id, attempt, owner))

    def close(self) -> None:
        self._db.close()
