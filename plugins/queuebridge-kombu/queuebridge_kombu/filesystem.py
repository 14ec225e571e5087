"""The embedded filesystem broker, made at-least-once.

Kombu's own filesystem transport deletes a message file when it reads it, before the
task ran, so a worker killed mid-job loses the job. This broker keeps Kombu's idea
(one file per message in a shared folder) but gives it lease semantics:

* **send** writes the job to ``<root>/tmp``, fsyncs it, and renames it into the
  queue's ``ready/`` folder (then fsyncs the folder): when ``send`` returns, the job
  survives a power cut.
* **reserve** claims the oldest due file by renaming it into ``processing/``; only
  one process can win that rename, so several workers on one host never run a job
  twice at once.
* **reserve_many** claims a batch from a cached due-ordered listing: one ``scandir``
  serves many batches (:mod:`~queuebridge_kombu.fsclaim`).
* **ack** deletes the file; **touch** refreshes its mtime; **recover** renames
  leases whose mtime is older than ``lease_timeout`` back to ``ready/``.
* delayed jobs are files whose name starts with a future due time: they survive
  restarts and are skipped until due.

It lives on one host's disk: ``Capabilities.shared_between_hosts`` is False.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

from queuebridge.backend import BackendSettings, Capabilities, Delivery, lost_leases
from queuebridge.envelope import Envelope, validate_queue_name
from queuebridge.errors import BackendUnavailable, EnvelopeError, LeaseLost, SerializationError
from queuebridge.redact import redact_text
from queuebridge_kombu.base import KombuBackend
from queuebridge_kombu.fsclaim import Claimer
from queuebridge_kombu.fsqueue import (
    REASON_SUFFIX,
    SUFFIX,
    QueueDirs,
    fsync_dir,
    job_file_name,
    now,
    renamed,
    write_atomically,
)
from queuebridge_kombu.options import filesystem_root

__all__ = ["FilesystemBackend"]

_PARALLEL_FROM = 4
_WRITERS = 16
_TMP_MAX_AGE = 3600.0
"""Leftovers of a crashed writer older than this are removed by ``recover``."""


class FilesystemBackend(KombuBackend):
    """A folder on the local disk as an at-least-once broker (see the module doc)."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        delayed=True, batch_send=True, shared_between_hosts=False
    )

    def __init__(self, settings: BackendSettings) -> None:
        super().__init__(settings)
        self.root = filesystem_root(settings.url or self.default_url)
        self._tmp = self.root / "tmp"
        self._lock = threading.Lock()
        self._dirs: dict[str, QueueDirs] = {}
        self._claimer = Claimer(self.options.poll_interval)
        self._leases: set[str] = set()
        """Paths this instance leased; ``close`` gives back what is still here."""
        self._pool: ThreadPoolExecutor | None = None

    # -- plumbing ----------------------------------------------------------------

    @contextmanager
    def _disk(self, operation: str) -> Iterator[None]:
        """Translate disk errors (full, read-only, missing mount ...)."""
        try:
            yield
        except OSError as exc:
            message = redact_text(f"{operation} failed on {self.root}: {exc}")
            raise BackendUnavailable(message, backend=self.name) from exc

    def _queue(self, queue: str) -> QueueDirs:
        dirs = self._dirs.get(queue)
        if dirs is None:
            dirs = QueueDirs(self.root, validate_queue_name(queue))
            self._tmp.mkdir(parents=True, exist_ok=True)
            dirs.create()
            self._dirs[queue] = dirs
        return dirs

    def _write(self, envelope: Envelope) -> Path:
        dirs = self._queue(envelope.queue)
        due = envelope.not_before if envelope.not_before is not None else now()
        target = dirs.ready / job_file_name(due, envelope.id)
        write_atomically(self._tmp, target, envelope.encode(), fsync=self.options.fsync)
        return dirs.ready

    def _writers(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(_WRITERS, thread_name_prefix="qb-fs-writer")
            return self._pool

    def _delivery(self, queue: str, path: str) -> Delivery:
        with open(path, "rb", buffering=0) as file:
            raw = file.readall()
        try:
            envelope: Envelope | None = Envelope.decode(raw)
            problem = ""
        except EnvelopeError as exc:
            envelope, problem = None, str(exc)
        return Delivery(self.name, queue, path, envelope, raw, problem)

    # -- sending -------------------------------------------------------------------

    def _send(self, envelope: Envelope) -> None:
        self._send_many((envelope,))

    def _send_many(self, envelopes: Sequence[Envelope]) -> None:
        with self._disk("send"):
            if self.options.fsync and len(envelopes) >= _PARALLEL_FROM:
                # Concurrent fsyncs share journal commits: a batch costs a few
                # commits, not one per job.
                folders = set(self._writers().map(self._write, envelopes))
            else:
                folders = {self._write(envelope) for envelope in envelopes}
            if self.options.fsync:
                for folder in folders:
                    fsync_dir(folder)

    # -- leasing -------------------------------------------------------------------

    def _reserve(self, queues: Sequence[str], timeout: float) -> Delivery | None:
        leased = self._reserve_many(queues, 1, timeout)
        return leased[0] if leased else None

    def _reserve_many(self, queues: Sequence[str], limit: int, timeout: float
                      ) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        with self._disk("reserve"):
            while True:
                leased: list[Delivery] = []
                for queue in queues:
                    if len(leased) < limit:
                        leased += self._claim(queue, limit - len(leased))
                remaining = deadline - time.monotonic()
                if leased or remaining <= 0:
                    return leased
                time.sleep(min(self.options.poll_interval, remaining))

    def _claim(self, queue: str, limit: int) -> list[Delivery]:
        """Lease up to ``limit`` due files of ``queue`` and read them."""
        paths = self._claimer.claim(queue, self._queue(queue), limit)
        self._leases.update(paths)
        leased = []
        for path in paths:
            try:
                leased.append(self._delivery(queue, path))
            except FileNotFoundError:
                continue  # recovered by another process between claim and read
        return leased

    def _release(self, delivery: Delivery) -> str:
        path: str = delivery.receipt
        # set.discard is atomic: the acking pool threads need no lock.
        self._leases.discard(path)
        return path

    def _ack(self, delivery: Delivery) -> None:
        path = self._release(delivery)
        with self._disk("ack"):
            if not _unlinked(path):
                raise self._lost(delivery)

    def _ack_many(self, deliveries: Sequence[Delivery]) -> None:
        paths = [self._release(delivery) for delivery in deliveries]
        with self._disk("ack_many"):
            if len(paths) >= _PARALLEL_FROM:
                # Unlinking an fsync'd file waits on the journal (~0.1 ms on ext4);
                # in parallel those waits overlap.
                gone = list(self._writers().map(_unlinked, paths))
            else:
                gone = [_unlinked(path) for path in paths]
        lost = [d for d, ok in zip(deliveries, gone, strict=True) if not ok]
        if lost:
            raise lost_leases(self.name, lost, len(deliveries))

    def _lost(self, delivery: Delivery) -> LeaseLost:
        return LeaseLost(
            f"job {delivery.job_id} is no longer leased (recovered after lease_timeout?)",
            backend=self.name,
        )

    def _retry(self, delivery: Delivery, envelope: Envelope) -> None:
        path = self._release(delivery)
        with self._disk("retry"):
            if not os.path.exists(path):
                raise self._lost(delivery)
            self._send_many((envelope,))
            # Unlink only after the next attempt is durable: a crash in between
            # leaves a duplicate (same id), never a lost job.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def _touch(self, deliveries: Sequence[Delivery]) -> None:
        with self._disk("touch"):
            for delivery in deliveries:
                try:
                    os.utime(delivery.receipt)
                except FileNotFoundError:
                    continue  # already acked or recovered: nothing to extend

    def _dead_letter(self, delivery: Delivery, reason: str) -> None:
        path = self._release(delivery)
        dirs = self._queue(delivery.queue)
        target = dirs.dead / os.path.basename(path)
        sidecar = target.with_name(target.name + REASON_SUFFIX)
        with self._disk("dead_letter"):
            write_atomically(self._tmp, sidecar, reason.encode(), fsync=self.options.fsync)
            try:
                os.rename(path, target)
            except FileNotFoundError:
                sidecar.unlink(missing_ok=True)
                raise self._lost(delivery) from None
            if self.options.fsync:
                fsync_dir(dirs.dead)

    def _dead_letters(self, queue: str, limit: int) -> list[tuple[Delivery, str]]:
        with self._disk("dead_letters"):
            dead = self._queue(queue).dead
            names = sorted(n for n in os.listdir(dead) if n.endswith(SUFFIX))[:limit]
            found = []
            for name in names:
                delivery = self._delivery(queue, os.path.join(dead, name))
                reason_file = dead / (name + REASON_SUFFIX)
                reason = reason_file.read_text() if reason_file.exists() else ""
                found.append((delivery, reason))
            return found

    # -- health and housekeeping ------------------------------------------------------

    def _ping(self) -> None:
        with self._disk("ping"):
            self._tmp.mkdir(parents=True, exist_ok=True)
            if not os.access(self._tmp, os.W_OK):
                raise PermissionError(f"{self._tmp} is not writable")

    def _depth(self, queue: str) -> int:
        with self._disk("depth"):
            return self._queue(queue).count_ready()

    def _recover(self) -> int:
        with self._disk("recover"):
            queues_dir = self.root / "queues"
            if not queues_dir.is_dir():
                return 0
            older_than = now() - self.settings.lease_timeout
            moved = sum(
                self._return_leases(self._queue(queue), older_than)
                for queue in _queues_on_disk(queues_dir)
            )
            self._sweep_tmp()
            return moved

    def _return_leases(self, dirs: QueueDirs, older_than: float) -> int:
        moved = 0
        for name in dirs.stale_leases(older_than):
            try:
                # A fresh name: the crashed holder's receipt can never match again.
                os.rename(dirs.processing / name, dirs.ready / renamed(name))
            except FileNotFoundError:
                continue  # acked, or another process recovered it first
            moved += 1
        return moved

    def _sweep_tmp(self) -> None:
        limit = now() - _TMP_MAX_AGE
        with os.scandir(self._tmp) as entries:
            for entry in entries:
                try:
                    if entry.stat().st_mtime < limit:
                        os.unlink(entry.path)
                except FileNotFoundError:
                    continue

    def _close(self) -> None:
        # Like a closed AMQP channel: what this instance still holds goes back now
        # instead of waiting for lease_timeout.
        with self._lock:
            leases, self._leases = self._leases, set()
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        with self._disk("close"):
            for path in map(Path, leases):
                try:
                    os.rename(path, path.parent.parent / "ready" / renamed(path.name))
                except FileNotFoundError:
                    continue


def _queues_on_disk(queues_dir: Path) -> list[str]:
    """The queues under ``queues/`` that can hold leases; anything else there (a stray
    file or folder, ``lost+found``, an invalid name) is left alone."""
    with os.scandir(queues_dir) as entries:
        folders = [entry.name for entry in entries if entry.is_dir()]
    return sorted(name for name in folders
                  if _valid_queue_name(name) and (queues_dir / name / "processing").is_dir())


def _valid_queue_name(name: str) -> bool:
    try:
        validate_queue_name(name)
    except SerializationError:
        return False
    return True


def _unlinked(path: str) -> bool:
    """Delete a leased file; False if it was gone (acked already, or recovered)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True
