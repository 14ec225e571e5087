"""Claiming due job files in batches, from a cached due-ordered listing of ``ready/``.

Listing a folder costs a ``scandir`` and a sort of every name in it; renaming a file
costs two syscalls. So a backend keeps the sorted listing of each queue and claims
from its head: one ``scandir`` serves many batches, and a batch of ``limit`` files
costs ``limit`` atomic renames. The listing may be stale (another process claimed
some of its files): such a rename fails with ``FileNotFoundError`` and the next name
is tried. Names are handed out under a lock, the renames happen outside it, so the
acking pool threads and a second consumer thread never wait for disk I/O here.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from queuebridge_kombu.fsqueue import QueueDirs, due_of, now

__all__ = ["Claimer"]


class Claimer:
    """The cached listings of one backend's queues (thread-safe)."""

    def __init__(self, poll_interval: float) -> None:
        self._poll_interval = poll_interval
        self._lock = threading.Lock()
        self._listings: dict[str, deque[str]] = {}
        self._scanned: dict[str, float] = {}

    def claim(self, queue: str, dirs: QueueDirs, limit: int) -> list[str]:
        """Lease up to ``limit`` due files of ``queue`` in due order; return their
        paths in ``processing/``. Lists the folder (at most once) only when the
        cached listing yields nothing."""
        claimed: list[str] = []
        may_scan = True
        while len(claimed) < limit:
            names, scanned = self._take_due(queue, dirs, limit - len(claimed), may_scan)
            if not names:
                break
            claimed.extend(path for name in names if (path := dirs.claim(name)) is not None)
            # Once this batch has files, a used-up listing ends it: the next call lists.
            may_scan = may_scan and not scanned and not claimed
        return claimed

    def _take_due(self, queue: str, dirs: QueueDirs, count: int, may_scan: bool
                  ) -> tuple[list[str], bool]:
        """Pop up to ``count`` due names off the listing, listing the folder again
        first if the cached listing is used up (or only holds jobs not due yet)."""
        with self._lock:
            names = self._listings.get(queue)
            scanned = may_scan and (not names or self._is_old(queue, names))
            if scanned:
                names = self._listings[queue] = deque(dirs.ready_names())
                self._scanned[queue] = time.monotonic()
            if not names:
                return [], scanned
            current = now()
            due: list[str] = []
            while names and len(due) < count and due_of(names[0]) <= current:
                due.append(names.popleft())
            return due, scanned

    def _is_old(self, queue: str, names: deque[str]) -> bool:
        """A listing whose head is not due yet is refreshed every poll interval, so
        newly arrived due jobs are not stuck behind delayed ones."""
        if due_of(names[0]) <= now():
            return False
        return time.monotonic() - self._scanned.get(queue, 0.0) >= self._poll_interval
