"""Leasing from RabbitMQ: a prefetching consumer feeding an in-process buffer.

``basic.consume`` with ``basic.qos(prefetch)`` lets the broker stream deliveries
while jobs run; ``reserve`` pops the buffer in the caller's queue order (priority
holds among prefetched deliveries). A delivery stays unacked on the broker until
``ack``: if the process dies, RabbitMQ redelivers it.

Threads: the worker's consumer thread blocks in :meth:`Consumer.take` while pool
threads ack. Both need the link lock, so ``take`` waits in short slices and steps
aside when an ack is waiting.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from queuebridge_kombu.link import Link
from queuebridge_kombu.topology import Topology

__all__ = ["Consumer", "Lease", "Receipt"]

_SLICE: Final = 0.02
"""Seconds the consumer holds the link lock while waiting for deliveries."""
_SETTLE_QUIET: Final = 0.01
_SETTLE_ROUNDS: Final = 50


@dataclass(frozen=True, slots=True)
class Receipt:
    """A delivery tag is only valid on the connection (generation) that issued it."""

    generation: int
    tag: int


@dataclass(slots=True)
class Lease:
    """A delivery handed out by ``reserve`` and not yet acked."""

    queue: str
    since: float
    """``time.monotonic()`` of the lease or its last touch."""


class Consumer:
    """Subscriptions, the prefetch buffer and the leases of one backend."""

    def __init__(self, link: Link, topology: Topology, prefetch: int) -> None:
        self.link = link
        self.topology = topology
        self._prefetch = prefetch
        self._buffers: dict[str, deque[Any]] = {}
        self._tags: dict[str, str] = {}
        self.leases: dict[int, Lease] = {}
        self.last_take = time.monotonic()
        self._waiting = 0
        self._heard: tuple[int, float] = (-1, 0.0)

    def on_connect(self, channel: Any) -> None:
        """A new connection: nothing is subscribed, buffered or leased on it."""
        self._buffers.clear()
        self._tags.clear()
        self.leases.clear()
        self.topology.reset()
        channel.basic_qos(0, self._prefetch, False)

    # -- waiting for a delivery ---------------------------------------------------

    def take(self, queues: Sequence[str], timeout: float) -> tuple[Any, str, Receipt] | None:
        """Lease the next buffered delivery of ``queues`` (in order), waiting up to
        ``timeout``. Returns ``(message, queue, receipt)`` or ``None``."""
        deadline = time.monotonic() + timeout
        while True:
            with self.link.lock, self.link.guard("reserve") as channel:
                self._probe_if_quiet(channel)
                self._subscribe(channel, queues)
                found = self._pop(queues, wait=min(_SLICE, deadline - time.monotonic()))
                self.last_take = time.monotonic()
                self._note_traffic(self.last_take)
                if found is not None:
                    message, queue = found
                    tag = message.delivery_info["delivery_tag"]
                    self.leases[tag] = Lease(queue, time.monotonic())
                    return message, queue, Receipt(self.link.generation, tag)
            if time.monotonic() >= deadline:
                return None
            for _ in range(20):  # let a waiting ack take the lock first (bounded)
                if not self._waiting:
                    break
                time.sleep(0.0005)

    def _probe_if_quiet(self, channel: Any) -> None:
        """An idle consumer cannot tell an empty queue from a hung broker: after
        ``timeout`` seconds without a byte from the broker, make one round trip
        (it times out on a hung broker, and the reserve fails fast)."""
        now = time.monotonic()
        if not self._note_traffic(now) and now - self._heard[1] > self.link.settings.timeout:
            channel.basic_qos(0, self._prefetch, False)
            self._note_traffic(now)

    def _note_traffic(self, now: float) -> bool:
        """Remember when the broker last sent anything; True if it just did."""
        received = self.link.connection.bytes_recv
        if received == self._heard[0]:
            return False
        self._heard = (received, now)
        return True

    def _subscribe(self, channel: Any, queues: Sequence[str]) -> None:
        new = [queue for queue in queues if queue not in self._buffers]
        for queue in new:
            self.topology.ensure_queue(channel, queue)
            buffer: deque[Any] = deque()
            self._buffers[queue] = buffer
            self._tags[queue] = channel.basic_consume(queue, callback=buffer.append)
        if new and len(queues) > 1:
            self._settle_in()

    def _settle_in(self) -> None:
        """After subscribing, let the broker push what already waits in every queue
        (until the socket is quiet), so the first pick honours the queue order."""
        connection = self.link.connection
        for _ in range(_SETTLE_ROUNDS):
            try:
                connection.drain_events(timeout=_SETTLE_QUIET)
            except TimeoutError:
                return

    def _pop(self, queues: Sequence[str], wait: float) -> tuple[Any, str] | None:
        if self._first(queues) is None:
            if wait > 0:
                self._drain(wait)
        elif len(queues) > 1:
            self._drain(0)  # a higher-priority delivery may be waiting in the socket
        queue = self._first(queues)
        return None if queue is None else (self._buffers[queue].popleft(), queue)

    def _first(self, queues: Sequence[str]) -> str | None:
        """The first of ``queues`` with a buffered delivery."""
        for queue in queues:
            if self._buffers.get(queue):
                return queue
        return None

    def _drain(self, wait: float) -> None:
        connection = self.link.connection
        with contextlib.suppress(TimeoutError):
            connection.drain_events(timeout=wait)
        connection.heartbeat_tick()

    # -- settling ---------------------------------------------------------------------

    def settle(self, receipt: Receipt, operation: str) -> bool:
        """Ack one leased delivery; False if it is no longer leased (connection lost,
        or given back by :meth:`recover`)."""
        self._waiting += 1  # a hint for take(); a lost update only costs a short spin
        with self.link.lock:
            self._waiting = max(0, self._waiting - 1)
            if not self.check(receipt):
                return False
            with self.link.guard(operation) as channel:
                channel.basic_ack(receipt.tag)
            del self.leases[receipt.tag]
            return True

    def keepalive(self) -> None:
        """Read pending frames and send a heartbeat if due (from a helper thread, so
        a busy worker that stops calling reserve keeps its connection and leases)."""
        if not self.link.lock.acquire(timeout=1.0):
            return  # take() is active: it ticks the heartbeat itself
        try:
            if self.link.connected:
                with self.link.guard("heartbeat"):
                    self._drain(0)
        finally:
            self.link.lock.release()

    def check(self, receipt: Receipt) -> bool:
        """True if ``receipt`` is still leased on the current connection."""
        return receipt.generation == self.link.generation and receipt.tag in self.leases

    def touch(self, receipts: Sequence[Receipt]) -> None:
        """Restart the lease clock of ``receipts``."""
        now = time.monotonic()
        with self.link.lock:
            for receipt in receipts:
                lease = self.leases.get(receipt.tag)
                if lease is not None and receipt.generation == self.link.generation:
                    lease.since = now

    def recover(self, lease_timeout: float) -> int:
        """Give back leases older than ``lease_timeout``; stop consuming when
        ``reserve`` has not been called for that long (so prefetched deliveries go
        to consumers that are alive). Returns how many leases were given back."""
        with self.link.lock:
            if not self.link.connected:
                return 0
            now = time.monotonic()
            with self.link.guard("recover") as channel:
                if self._buffers and now - self.last_take > lease_timeout:
                    self._unsubscribe(channel)
                expired = [tag for tag, lease in self.leases.items()
                           if now - lease.since > lease_timeout]
                for tag in expired:
                    channel.basic_reject(tag, requeue=True)
                    del self.leases[tag]
            return len(expired)

    def _unsubscribe(self, channel: Any) -> None:
        for tag in self._tags.values():
            channel.basic_cancel(tag)
        for buffer in self._buffers.values():
            for message in buffer:
                channel.basic_reject(message.delivery_info["delivery_tag"], requeue=True)
        self._buffers.clear()
        self._tags.clear()
