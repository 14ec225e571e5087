"""The durable local spool: where jobs wait while every backend is down.

One SQLite file (``journal_mode=WAL``, ``synchronous=FULL``: a spooled job is on
disk before the enqueue returns) with one table. It is bounded (``max_jobs``;
:class:`~queuebridge.errors.SpoolFull` beyond it, never a silent drop), safe for
many threads (one connection behind a lock) and for many processes (SQLite's
locking, a busy timeout, and row *claims* for draining).

Draining claims a batch of the oldest rows in one ``BEGIN IMMEDIATE`` transaction
(``claimed_by``/``claimed_at``), sends it outside any transaction, then deletes it.
A claim expires after ``claim_ttl`` seconds, so rows claimed by a process that died
are drained by another. A crash between send and delete resends the batch later:
a duplicate with the same job ids, never a loss.
"""

from __future__ import annotations

import builtins
import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from queuebridge.envelope import Envelope
from queuebridge.errors import (
    EnqueueError,
    EnvelopeError,
    JobRejected,
    QueueBridgeError,
    SpoolFull,
)
from queuebridge.health import BackgroundLoop

__all__ = ["Drainer", "Spool", "SpooledJob"]

log = logging.getLogger("queuebridge.spool")

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    queue TEXT NOT NULL,
    task TEXT NOT NULL,
    body TEXT NOT NULL,
    spooled_at REAL NOT NULL,
    claimed_by TEXT,
    claimed_at REAL
)
"""
_COLUMNS: Final = "seq, job_id, queue, task, body, spooled_at, claimed_by"
_PARKED: Final = "undecodable"
_REJECTED: Final = "rejected"
"""Claim marks of rows set aside for an operator: they are never claimed again."""
"""``claimed_by`` of a row whose body is not an envelope: kept for an operator, never sent."""
_FOREVER: Final = 1e300


@dataclass(frozen=True, slots=True)
class SpooledJob:
    """One spooled row, as listed by :meth:`Spool.list`."""

    seq: int
    job_id: str
    queue: str
    task: str
    body: str
    """The envelope JSON, exactly as it will be replayed."""
    spooled_at: float
    claimed_by: str | None
    """The drainer currently sending it; ``undecodable`` (a corrupt row) or ``rejected``
    (refused by every backend) for a row set aside for an operator; else None."""

    @property
    def envelope(self) -> Envelope:
        """The decoded envelope. Raises :class:`EnvelopeError` for a corrupt row."""
        return Envelope.decode(self.body)


class Spool:
    """A bounded, durable, multi-process FIFO of envelopes in one SQLite file.

    The parent directories of ``path`` are created. Every method raises
    :class:`QueueBridgeError` (``EnqueueError`` from :meth:`put_many`) when SQLite
    fails, with the SQLite error as the cause.
    """

    def __init__(self, path: str | os.PathLike[str], max_jobs: int = 100_000, *,
                 claim_ttl: float = 60.0, busy_timeout: float = 5.0) -> None:
        self.path = Path(path)
        self.max_jobs = max_jobs
        self.claim_ttl = claim_ttl
        """Seconds after which another drainer may take over a claimed batch; keep it
        well above the longest send (the router's enqueue deadline)."""
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lock = threading.Lock()
        with _translated(QueueBridgeError, self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db: sqlite3.Connection | None = _connect(self.path, busy_timeout)

    def __repr__(self) -> str:
        return f"<Spool {str(self.path)!r} max_jobs={self.max_jobs}>"

    def put_many(self, envelopes: Sequence[Envelope]) -> None:
        """Durably store ``envelopes`` (all or none); return once they are fsync'd.

        Raises :class:`SpoolFull` when they would take the spool past ``max_jobs``.
        """
        now = time.time()
        rows = [(env.id, env.queue, env.task, env.encode().decode(), now) for env in envelopes]
        with _translated(EnqueueError, self.path), self._transaction() as db:
            (count,) = db.execute("SELECT COUNT(*) FROM jobs").fetchone()
            if count + len(rows) > self.max_jobs:
                raise SpoolFull(f"spool {self.path} holds {count} jobs (max_jobs="
                                f"{self.max_jobs}); {len(rows)} more do not fit")
            db.executemany("INSERT INTO jobs (job_id, queue, task, body, spooled_at) "
                           "VALUES (?, ?, ?, ?, ?)", rows)

    def count(self) -> int:
        """Number of spooled jobs, including those being drained right now."""
        with _translated(QueueBridgeError, self.path), self._locked() as db:
            (count,) = db.execute("SELECT COUNT(*) FROM jobs").fetchone()
            return int(count)

    def list(self, limit: int = 100) -> builtins.list[SpooledJob]:
        """The oldest ``limit`` spooled jobs, oldest first."""
        with _translated(QueueBridgeError, self.path), self._locked() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM jobs ORDER BY seq LIMIT ?",  # noqa: S608
                              (limit,)).fetchall()
        return [SpooledJob(*row) for row in rows]

    def drain(self, send: Callable[[Sequence[Envelope]], object], batch: int = 100,
              progress: Callable[[int, int], None] | None = None) -> int:
        """Replay spooled jobs oldest-first through ``send``, ``batch`` at a time.

        A batch is deleted only after ``send`` returned; if ``send`` raises, the batch
        stays spooled (claim released) and the exception propagates. Rows another
        drainer holds are skipped. ``progress(done, total)`` follows each batch.
        Return how many jobs were sent.
        """
        total, done = self.count(), 0
        while claimed := self._claim(batch):
            done += self._send_claimed(claimed, send)
            if progress is not None:
                progress(done, max(total, done))
        return done

    def _send_claimed(self, claimed: builtins.list[tuple[int, Envelope]],
                      send: Callable[[Sequence[Envelope]], object]) -> int:
        """Send claimed rows; delete them once sent. A batch every backend refused is
        split, and a single row every backend refused is set aside (never retried in a
        loop, never deleted). Return how many were sent."""
        seqs = [seq for seq, _ in claimed]
        try:
            send([envelope for _, envelope in claimed])
        except JobRejected as exc:
            if len(claimed) == 1:
                self._set_aside(seqs[0], claimed[0][1], exc)
                return 0
            return self._send_one_by_one(claimed, send)
        except BaseException:
            self._release(seqs)
            raise
        self._delete(seqs)
        return len(seqs)

    def _send_one_by_one(self, claimed: builtins.list[tuple[int, Envelope]],
                         send: Callable[[Sequence[Envelope]], object]) -> int:
        sent = 0
        for index, row in enumerate(claimed):
            try:
                sent += self._send_claimed([row], send)
            except BaseException:
                self._release([seq for seq, _ in claimed[index + 1:]])
                raise
        return sent

    def _set_aside(self, seq: int, envelope: Envelope, exc: JobRejected) -> None:
        log.error("spooled job %s (%s) was refused by every backend; kept in %s, not "
                  "retried: %s", envelope.id, envelope.task, self.path, exc)
        with _translated(QueueBridgeError, self.path), self._transaction() as db:
            db.execute("UPDATE jobs SET claimed_by = ?, claimed_at = ? WHERE seq = ?",
                       (_REJECTED, _FOREVER, seq))

    def close(self) -> None:
        """Close the database connection. Idempotent."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # -- draining steps --------------------------------------------------------------

    def _claim(self, batch: int) -> builtins.list[tuple[int, Envelope]]:
        now = time.time()
        with _translated(QueueBridgeError, self.path), self._transaction() as db:
            rows = db.execute(
                "SELECT seq, body FROM jobs WHERE claimed_by IS NULL OR claimed_at < ? "
                "ORDER BY seq LIMIT ?", (now - self.claim_ttl, batch)).fetchall()
            claimed, parked = [], []
            for seq, body in rows:
                try:
                    claimed.append((seq, Envelope.decode(body)))
                except EnvelopeError as exc:
                    log.error("spool row %d is not an envelope, kept aside: %s", seq, exc)
                    parked.append((_PARKED, _FOREVER, seq))
            db.executemany("UPDATE jobs SET claimed_by = ?, claimed_at = ? WHERE seq = ?",
                           [(self._owner, now, seq) for seq, _ in claimed] + parked)
        return claimed

    def _release(self, seqs: Sequence[int]) -> None:
        with _translated(QueueBridgeError, self.path), self._transaction() as db:
            db.executemany("UPDATE jobs SET claimed_by = NULL, claimed_at = NULL "
                           "WHERE seq = ? AND claimed_by = ?",
                           [(seq, self._owner) for seq in seqs])

    def _delete(self, seqs: Sequence[int]) -> None:
        with _translated(QueueBridgeError, self.path), self._transaction() as db:
            db.executemany("DELETE FROM jobs WHERE seq = ?", [(seq,) for seq in seqs])

    # -- connection ------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._db is None:
                raise QueueBridgeError(f"spool {self.path} is closed")
            yield self._db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front, so the count check in put_many and
        # the select-then-claim in _claim cannot interleave with another process.
        with self._locked() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")


def _connect(path: Path, busy_timeout: float) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), timeout=busy_timeout, isolation_level=None,
                         check_same_thread=False)
    db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    db.execute("PRAGMA journal_mode = WAL")
    # FULL: each commit is fsync'd, so a spooled job survives a power cut.
    db.execute("PRAGMA synchronous = FULL")
    db.execute(_SCHEMA)
    return db


@contextmanager
def _translated(kind: type[QueueBridgeError], path: Path) -> Iterator[None]:
    """Turn SQLite and file-system errors into ``kind``, keeping the cause."""
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        raise kind(f"spool {path}: {type(exc).__name__}: {exc}") from exc


class Drainer(BackgroundLoop):
    """Replays the spool through ``send`` while ``ready()`` is true.

    It drains when woken (something was spooled, a backend came up) and otherwise
    every ``idle_wait`` seconds (rows spooled by other processes, expired claims).
    A failed batch stays spooled and the drainer waits for the next wake.
    """

    def __init__(self, spool: Spool, send: Callable[[Sequence[Envelope]], object],
                 ready: Callable[[], bool], *, batch: int, idle_wait: float) -> None:
        self._spool = spool
        self._send = send
        self._ready = ready
        self._batch = batch
        self._idle_wait = idle_wait
        super().__init__("queuebridge-drainer")

    def _step(self) -> float:
        if self._ready():
            self._drain()
        return self._idle_wait

    def _drain(self) -> None:
        try:
            drained = self._spool.drain(self._send_unless_stopped, self._batch)
        except QueueBridgeError as exc:
            log.info("spool drain paused: %s", exc)
            return
        if drained:
            log.info("replayed %d spooled job(s) from %s", drained, self._spool.path)

    def _send_unless_stopped(self, envelopes: Sequence[Envelope]) -> object:
        if self._stopped:
            raise EnqueueError("the router is closing; spooled jobs stay spooled")
        return self._send(envelopes)
