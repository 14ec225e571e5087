"""The on-disk layout of the filesystem broker, without any queuebridge policy.

::

    <root>/tmp/                          files being written (never read from)
    <root>/queues/<queue>/ready/         jobs waiting, one file each
    <root>/queues/<queue>/processing/    leased jobs (claimed by rename)
    <root>/queues/<queue>/dead/          dead letters, each with a ``.reason`` sidecar

A job file is named ``<due>-<unique>-<job id>.json`` where ``<due>`` is the time
it may run, in zero-padded microseconds: a sorted listing is the order jobs are
due in, and a delayed job is simply a file whose name lies in the future. Every
state change is one atomic ``rename`` inside the root, so several processes on
one host can share the folder: whoever renames a file first owns it, the other
gets ``FileNotFoundError`` and moves on.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from pathlib import Path
from typing import Final

__all__ = ["QueueDirs", "due_of", "job_file_name", "write_atomically"]

SUFFIX: Final = ".json"
REASON_SUFFIX: Final = ".reason"
_DUE_WIDTH: Final = 17
_counter = itertools.count()
_counter_lock = threading.Lock()


def job_file_name(due: float, job_id: str) -> str:
    """A unique, due-ordered file name for a job."""
    with _counter_lock:
        seq = next(_counter)
    return f"{int(due * 1_000_000):0{_DUE_WIDTH}d}-{os.getpid():07d}{seq:010d}-{job_id}{SUFFIX}"


def due_of(name: str) -> float:
    """The due time (epoch seconds) encoded in a job file name; 0 if unreadable."""
    head = name[:_DUE_WIDTH]
    return int(head) / 1_000_000 if head.isdigit() else 0.0


def renamed(name: str) -> str:
    """The same due time under a fresh unique part, so an old lease holder can never
    touch the file again once it has been recovered."""
    job_id = name.split("-", 2)[2][: -len(SUFFIX)] if name.count("-") >= 2 else "unknown"
    return job_file_name(due_of(name), job_id)


def write_atomically(tmp_dir: Path, target: Path, data: bytes, *, fsync: bool) -> None:
    """Write ``data`` to a temporary file, fsync it, then rename it to ``target``."""
    tmp = tmp_dir / f"{target.name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, data)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, target)


def fsync_dir(path: Path) -> None:
    """Make renames into ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class QueueDirs:
    """The three folders of one queue, created on first use."""

    __slots__ = ("_processing_prefix", "_ready_prefix", "dead", "processing", "ready")

    def __init__(self, root: Path, queue: str) -> None:
        base = root / "queues" / queue
        self.ready = base / "ready"
        self.processing = base / "processing"
        self.dead = base / "dead"
        # The hot path (claim) joins strings: pathlib costs more than the syscalls.
        self._ready_prefix = os.path.join(self.ready, "")
        self._processing_prefix = os.path.join(self.processing, "")

    def create(self) -> None:
        """Create the folders (idempotent)."""
        for path in (self.ready, self.processing, self.dead):
            path.mkdir(parents=True, exist_ok=True)

    def ready_names(self) -> list[str]:
        """Sorted (due-ordered) names of the waiting jobs."""
        with os.scandir(self.ready) as entries:
            return sorted(e.name for e in entries if e.name.endswith(SUFFIX))

    def count_ready(self) -> int:
        """How many jobs wait (due or not)."""
        with os.scandir(self.ready) as entries:
            return sum(1 for e in entries if e.name.endswith(SUFFIX))

    def stale_leases(self, older_than: float) -> list[str]:
        """Names of leased files not touched since ``older_than`` (epoch seconds)."""
        stale = []
        with os.scandir(self.processing) as entries:
            for entry in entries:
                if not entry.name.endswith(SUFFIX):
                    continue
                try:
                    if entry.stat().st_mtime < older_than:
                        stale.append(entry.name)
                except FileNotFoundError:
                    continue  # acked or recovered meanwhile
        return stale

    def claim(self, name: str) -> str | None:
        """Lease ``name``: stamp it (the lease clock) and rename it into processing.

        Returns the leased path, or ``None`` when another consumer won the race.
        """
        source = self._ready_prefix + name
        target = self._processing_prefix + name
        try:
            # Stamp before the rename so the leased file never carries an old
            # mtime that another process's recover would take for an orphan.
            os.utime(source)
            os.rename(source, target)
        except FileNotFoundError:
            return None
        return target


def now() -> float:
    """Wall-clock time (the clock job file names use)."""
    return time.time()
