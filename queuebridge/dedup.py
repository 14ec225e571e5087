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

import contextlib
import enum
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from queuebridge.errors import QueueBridgeError

__all__ = ["Claim", "DedupStore", "Rows", "SQLiteDedupStore", "StateDatabase",
           "StoreUnavailable", "connect"]

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

    def claim_many(self, keys: Sequence[tuple[str, int]], owner: str, lease: float
                   ) -> list[Claim]:
        """:meth:`claim` for a batch, answers in order. Override to use one round trip."""
        return [self.claim(job_id, attempt, owner, lease) for job_id, attempt in keys]

    def flush(self, older_than: float = 0.0) -> None:
        """Write buffered :meth:`finish` calls whose oldest waited ``older_than`` seconds.
        Stores that write through (the default) have nothing to do."""

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


class Rows:
    """The fully fetched result of one statement (read while the connection was held)."""

    __slots__ = ("rowcount", "rows")

    def __init__(self, rows: list[tuple[Any, ...]], rowcount: int) -> None:
        self.rows = rows
        self.rowcount = rowcount

    def fetchone(self) -> tuple[Any, ...] | None:
        """The first row, or ``None``."""
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        """Every row."""
        return self.rows


class StateDatabase:
    """The worker state file behind one SQLite connection and a lock.

    One connection per process, not per thread: connections of one process would
    otherwise contend for SQLite's write lock, and its busy handler *sleeps*
    (milliseconds) where a Python lock waits microseconds. Raises
    :class:`StoreUnavailable` on any error.
    """

    def __init__(self, path: Path, schema: str) -> None:
        self.path = path
        self._schema = schema
        self._conn: sqlite3.Connection | None = None
        self.lock = threading.RLock()

    def get(self) -> sqlite3.Connection:
        """The connection, opened on first use. Call it holding :attr:`lock`."""
        if self._conn is None:
            try:
                self._conn = connect(self.path, self._schema)
            except (sqlite3.Error, OSError) as exc:
                raise StoreUnavailable(f"{self.path}: {exc}") from exc
        return self._conn

    def execute(self, sql: str, params: Sequence[object] = ()) -> Rows:
        """Run one statement (autocommit) and fetch its rows."""
        with self.lock:
            try:
                cursor = self.get().execute(sql, params)
                return Rows(cursor.fetchall(), cursor.rowcount)
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"{self.path}: {exc}") from exc

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Hold the lock and one write transaction for several statements (one commit)."""
        with self.lock:
            try:
                conn = self.get()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"{self.path}: {exc}") from exc

    def close(self) -> None:
        """Close the connection (a later call opens a new one)."""
        with self.lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


_CLAIM = ("INSERT INTO claims VALUES (?, ?, 'running', ?, ?) "
          "ON CONFLICT (job_id, attempt) DO UPDATE SET state = 'running', "
          "owner = excluded.owner, expires = excluded.expires WHERE claims.expires <= ?")
_STATE = "SELECT state FROM claims WHERE job_id = ? AND attempt = ?"
_FINISH = "UPDATE claims SET state = 'done', expires = ? WHERE job_id = ? AND attempt = ?"
FLUSH_EVERY = 0.05
"""Seconds a finished attempt may wait in memory before it is written (see ``finish``)."""
_FLUSH_BATCH = 256


class SQLiteDedupStore(DedupStore):
    """Claims in a local SQLite file, shared by the worker processes of one host.

    ``finish`` is buffered: finished attempts are written in one transaction when
    ``FLUSH_EVERY`` seconds or a few hundred attempts have accumulated (the worker calls
    :meth:`flush` from its consumer loops). Until written, a claim by another process
    sees the attempt ``running`` (so it is handed back, never skipped); a claim through
    this store sees it ``done`` at once.
    """

    def __init__(self, path: Path) -> None:
        self._db = StateDatabase(Path(path), _SCHEMA)
        self._pending: dict[tuple[str, int], float] = {}
        self._pending_lock = threading.Lock()
        self._oldest = 0.0
        self._finished = 0

    def claim(self, job_id: str, attempt: int, owner: str, lease: float) -> Claim:
        return self.claim_many([(job_id, attempt)], owner, lease)[0]

    def claim_many(self, keys: Sequence[tuple[str, int]], owner: str, lease: float
                   ) -> list[Claim]:
        with self._db.lock:
            with self._pending_lock:
                unwritten = any(key in self._pending for key in keys)
            if unwritten:
                self.flush()  # its finish must be visible (and its TTL honoured) first
            now = time.time()
            with self._db.transaction() as conn:
                return [self._claim_one(conn, key, owner, now, lease) for key in keys]

    @staticmethod
    def _claim_one(conn: sqlite3.Connection, key: tuple[str, int], owner: str, now: float,
                   lease: float) -> Claim:
        # One statement, so two workers racing for the same attempt cannot both win.
        if conn.execute(_CLAIM, (*key, owner, now + lease, now)).rowcount == 1:
            return Claim.CLAIMED
        row = conn.execute(_STATE, key).fetchone()
        if row is None:  # purged between the two statements: the attempt is free
            conn.execute(_CLAIM, (*key, owner, now + lease, now))
            return Claim.CLAIMED
        return Claim.DONE if row[0] == "done" else Claim.BUSY

    def renew(self, keys: Sequence[tuple[str, int]], owner: str, lease: float) -> None:
        expires = time.time() + lease
        with self._db.transaction() as conn:
            conn.executemany("UPDATE claims SET expires = ? WHERE job_id = ? AND attempt = ? "
                             "AND owner = ? AND state = 'running'",
                             [(expires, job_id, attempt, owner) for job_id, attempt in keys])

    def finish(self, job_id: str, attempt: int, ttl: float) -> None:
        # Its own small lock: a pool thread never waits here for another's SQLite I/O.
        with self._pending_lock:
            if not self._pending:
                self._oldest = time.monotonic()
            self._pending[(job_id, attempt)] = time.time() + ttl
            full = len(self._pending) >= _FLUSH_BATCH
        if full:
            self.flush()

    def flush(self, older_than: float = 0.0) -> None:
        """Write the buffered finishes, when the oldest waited ``older_than`` seconds."""
        with self._db.lock:
            with self._pending_lock:
                if not self._pending or time.monotonic() - self._oldest < older_than:
                    return
                rows = [(expires, job_id, attempt)
                        for (job_id, attempt), expires in self._pending.items()]
            with self._db.transaction() as conn:
                conn.executemany(_FINISH, rows)
                self._finished += len(rows)
                if self._finished >= 1000:
                    self._finished = 0
                    conn.execute("DELETE FROM claims WHERE expires < ?", (time.time(),))
            with self._pending_lock:
                # Only what was written: finishes that arrived meanwhile stay pending.
                for _, job_id, attempt in rows:
                    self._pending.pop((job_id, attempt), None)

    def release(self, job_id: str, attempt: int, owner: str) -> None:
        self._db.execute("DELETE FROM claims WHERE job_id = ? AND attempt = ? AND owner = ? "
                         "AND state = 'running'", (job_id, attempt, owner))

    def close(self) -> None:
        # An unwritable file loses the buffered finishes: at worst a duplicate runs.
        with contextlib.suppress(StoreUnavailable):
            self.flush()
        self._db.close()
