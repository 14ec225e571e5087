"""Deliver routing transitions to plugins on a thread of their own.

The thread that notices a transition is usually an application thread in the middle
of an enqueue; a plugin hook that pages someone over HTTP must not spend that
caller's deadline. Events keep their order (one delivery thread, FIFO) and each is
delivered once.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Final

from queuebridge.events import TransitionEvent

__all__ = ["EventRelay"]

_STOP: Final = object()


class EventRelay:
    """A FIFO of transition events and the daemon thread that delivers them.

    The thread starts with the first event: a Bridge that never sees a transition
    never starts it.
    """

    def __init__(self, deliver: Callable[[TransitionEvent], None]) -> None:
        self._deliver = deliver
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._cond = threading.Condition()
        self._queued = 0
        self._delivered = 0
        self._thread: threading.Thread | None = None
        self._closed = False

    def put(self, event: TransitionEvent) -> None:
        """Queue ``event``; never blocks on a plugin."""
        with self._cond:
            if self._closed:
                return
            self._queued += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="queuebridge-events",
                                                daemon=True)
                self._thread.start()
        self._queue.put(event)

    def flush(self, timeout: float) -> bool:
        """Wait until every queued event was delivered; False if ``timeout`` passed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._delivered < self._queued:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def close(self, timeout: float) -> None:
        """Deliver what is queued (waiting up to ``timeout``), then stop the thread."""
        self.flush(timeout)
        with self._cond:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout)

    def _run(self) -> None:
        while (item := self._queue.get()) is not _STOP:
            try:
                assert isinstance(item, TransitionEvent)
                self._deliver(item)  # PluginManager already logs and swallows hook errors
            finally:
                with self._cond:
                    self._delivered += 1
                    self._cond.notify_all()
