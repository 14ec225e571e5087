"""Leasing from RabbitMQ: a prefetching consumer feeding an in-process buffer.

``basic.consume`` with ``basic.qos(prefetch)`` lets the broker stream deliveries
while jobs run; ``take`` pops the buffer in the caller's queue order (priority
holds among prefetched deliveries), a whole batch under one lock. A delivery stays
unacked on the broker until ``ack``: if the process dies, RabbitMQ redelivers it.

Threads: the worker's consumer thread blocks in :meth:`Consumer.take` while pool
threads ack. py-amqp is not thread-safe, so only the holder of the link lock
touches the channel. An ack never waits for that lock: ``basic.ack`` has no reply,
so :meth:`Consumer.settle` queues it and whoever holds the lock (or the acking
thread itself, when the lock is free) writes it before letting go.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

from queuebridge_kombu.link import DRIVER_ERRORS, Link
from queuebridge_kombu.topology import Topology

__all__ = ["Consumer", "Lease", "Receipt", "Taken"]

_SLICE: Final = 0.05
"""Seconds the consumer holds the link lock while waiting for deliveries (recover,
touch and the heartbeat thread get the lock in between)."""
_SETTLE_QUIET: Final = 0.01
_PENDING_READ: Final = 0.001
"""Seconds a read of frames the broker already pushed may wait. Never 0: with a
partial frame buffered, py-amqp retries a non-blocking read forever on "would
block"; a positive timeout raises ``socket.timeout`` and keeps the partial frame."""
_SETTLE_ROUNDS: Final = 50
WINDOW_PER_SLOT: Final = 2
"""The prefetch window is at least this many times the largest batch asked for:
while one batch runs, the next is already buffered."""


@dataclass(frozen=True, slots=True)
class Receipt:
    """A delivery tag is only valid on the connection (generation) that issued it."""

    generation: int
    tag: int


@dataclass(slots=True)
class Lease:
    """A delivery handed out by ``take`` and not yet acked."""

    queue: str
    since: float
    """``time.monotonic()`` of the lease or its last touch."""


Taken = tuple[Any, str, Receipt]
"""A leased delivery: ``(message, queue, receipt)``."""


class Consumer:
    """Subscriptions, the prefetch buffer and the leases of one backend."""

    def __init__(self, link: Link, topology: Topology, prefetch: int) -> None:
        self.link = link
        self.topology = topology
        self._prefetch = prefetch
        self.window = prefetch
        """The ``basic.qos`` prefetch count in force (never below ``prefetch``)."""
        self._buffers: dict[str, deque[Any]] = {}
        self._tags: dict[str, str] = {}
        self.leases: dict[Receipt, Lease] = {}
        self._acks: deque[Receipt] = deque()
        self.last_take = time.monotonic()
        self.probes = 0
        """Round trips made to check an idle broker (see :meth:`_probe_if_quiet`)."""
        self._heard: tuple[int, float] = (-1, 0.0)

    def on_connect(self, channel: Any) -> None:
        """A new connection: nothing is subscribed, buffered or leased on it."""
        self._buffers.clear()
        self._tags.clear()
        self.leases.clear()
        self._acks.clear()
        self.topology.reset()
        channel.basic_qos(0, self.window, False)

    @contextmanager
    def _holding(self, operation: str) -> Iterator[Any]:
        """The channel, under the link lock; queued acks go out before it is released."""
        with self.link.lock, self.link.guard(operation) as channel:
            self._flush(channel)
            yield channel
            self._flush(channel)
        self._flush_if_free()

    # -- waiting for deliveries ---------------------------------------------------

    def take(self, queues: Sequence[str], limit: int, timeout: float) -> list[Taken]:
        """Lease up to ``limit`` buffered deliveries of ``queues`` (in order), waiting up
        to ``timeout`` for the first one. Returns ``[]`` when nothing arrived."""
        deadline = time.monotonic() + timeout
        while True:
            with self._holding("reserve") as channel:
                self._ensure_window(channel, limit)
                self._subscribe(channel, queues)
                self._fill(channel, queues, limit, min(_SLICE, deadline - time.monotonic()))
                self.last_take = time.monotonic()
                taken = self._pop(queues, limit)
            if taken or time.monotonic() >= deadline:
                return taken

    def _ensure_window(self, channel: Any, limit: int) -> None:
        """Widen ``basic.qos`` so a worker leasing ``limit`` at a time never starves;
        the unacked deliveries stay bounded by the window."""
        wanted = min(65535, WINDOW_PER_SLOT * limit)
        if wanted > self.window:
            channel.basic_qos(0, wanted, False)
            self.window = wanted
            self._resubscribe(channel)

    def _resubscribe(self, channel: Any) -> None:
        """``basic.qos`` (global false) binds only consumers created after it: the
        existing ones subscribe again to get the new window. What they buffered or
        leased stays valid (delivery tags belong to the channel, not the consumer)."""
        for queue, tag in list(self._tags.items()):
            channel.basic_cancel(tag)
            self._consume(channel, queue)

    def _fill(self, channel: Any, queues: Sequence[str], limit: int, wait: float) -> None:
        """Read what the broker already pushed (a higher-priority delivery may be in
        the socket); if nothing for ``queues`` is buffered, wait up to ``wait``."""
        connection = self.link.connection
        transport = connection.transport
        if self._buffered(queues) == 0:
            self._probe_if_quiet(channel)
            if wait > 0:
                with transport.having_timeout(wait):
                    self._read_event(connection)
        # Whatever else already sits in the socket joins this batch, without waiting.
        # One socket timeout for the whole loop (py-amqp would set and reset it per
        # frame), and one deadline: a broker trickling frames cannot keep us here.
        deadline = time.monotonic() + self.link.settings.timeout
        with transport.having_timeout(_PENDING_READ):
            while (self._buffered(queues) < limit and time.monotonic() < deadline
                   and self._read_event(connection)):
                pass
        connection.heartbeat_tick()
        self._note_traffic(time.monotonic())

    def _buffered(self, queues: Sequence[str]) -> int:
        return sum(len(self._buffers.get(queue, ())) for queue in queues)

    def _pop(self, queues: Sequence[str], limit: int) -> list[Taken]:
        taken: list[Taken] = []
        generation, now = self.link.generation, time.monotonic()
        for queue in queues:
            buffer = self._buffers.get(queue)
            while buffer and len(taken) < limit:
                message = buffer.popleft()
                receipt = Receipt(generation, message.delivery_info["delivery_tag"])
                self.leases[receipt] = Lease(queue, now)
                taken.append((message, queue, receipt))
        return taken

    def _probe_if_quiet(self, channel: Any) -> None:
        """An idle consumer cannot tell an empty queue from a hung broker: after
        ``timeout`` seconds without a byte from the broker, make one round trip
        (it times out on a hung broker, and the reserve fails fast). Only called
        with nothing buffered: while deliveries flow there is nothing to check."""
        now = time.monotonic()
        if not self._note_traffic(now) and now - self._heard[1] > self.link.settings.timeout:
            self.probes += 1
            channel.basic_qos(0, self.window, False)
            self._note_traffic(now)

    def _note_traffic(self, now: float) -> bool:
        """Remember when the broker last sent anything; True if it did since last time."""
        received = self.link.connection.bytes_recv
        if received == self._heard[0]:
            return False
        self._heard = (received, now)
        return True

    def _subscribe(self, channel: Any, queues: Sequence[str]) -> None:
        new = [queue for queue in queues if queue not in self._buffers]
        for queue in new:
            self.topology.ensure_queue(channel, queue)
            self._buffers[queue] = deque()
            self._consume(channel, queue)
        if new and len(queues) > 1:
            self._settle_in()

    def _consume(self, channel: Any, queue: str) -> None:
        self._tags[queue] = channel.basic_consume(queue, callback=self._buffers[queue].append)

    def _settle_in(self) -> None:
        """After subscribing, let the broker push what already waits in every queue
        (until the socket is quiet), so the first pick honours the queue order."""
        connection = self.link.connection
        for _ in range(_SETTLE_ROUNDS):
            try:
                connection.drain_events(timeout=_SETTLE_QUIET)
            except TimeoutError:
                return

    @staticmethod
    def _read_event(connection: Any) -> bool:
        """Read one delivery (or other event) within the socket's timeout; False if
        none came."""
        try:
            connection.drain_events(timeout=None)  # None: keep the timeout set around us
        except TimeoutError:
            return False
        return True

    # -- settling ---------------------------------------------------------------------

    def settle(self, receipt: Receipt) -> bool:
        """Ack one leased delivery; False if it is no longer leased (connection lost,
        or given back by :meth:`recover`). See :meth:`settle_many`."""
        return self.settle_many((receipt,))[0]

    def settle_many(self, receipts: Sequence[Receipt]) -> list[bool]:
        """Ack leased deliveries; for each, False if it was no longer leased.

        Never waits for a thread that holds the link: the acks are queued and written
        by the lock holder before it lets go. If the connection dies before that,
        RabbitMQ redelivers the jobs (at least once, as with any unconfirmed ack).
        """
        # dict.pop is atomic: of a racing settle and recover, exactly one wins.
        held = [self.leases.pop(receipt, None) is not None and self._current(receipt)
                for receipt in receipts]
        self._acks.extend(receipt for receipt, ok in zip(receipts, held, strict=True) if ok)
        self._flush_if_free()
        return held

    def _flush(self, channel: Any) -> None:
        generation = self.link.generation
        while self._acks:
            receipt = self._acks.popleft()
            if receipt.generation == generation:  # an old tag would close the channel
                channel.basic_ack(receipt.tag)

    def _flush_if_free(self) -> None:
        """Write queued acks unless another thread holds the link (it writes them
        before releasing it; the loop covers an ack queued just as it let go)."""
        while self._acks and self.link.lock.acquire(blocking=False):
            try:
                if not self.link.connected:
                    self._acks.clear()  # their connection is gone: RabbitMQ redelivers
                    return
                with self.link.guard("ack") as channel:
                    self._flush(channel)
            finally:
                self.link.lock.release()

    def keepalive(self) -> None:
        """Read pending frames and send a heartbeat if due (from a helper thread, so
        a busy worker that stops calling reserve keeps its connection and leases)."""
        if not self.link.lock.acquire(timeout=1.0):
            return  # take() is active: it ticks the heartbeat itself
        try:
            if self.link.connected:
                with self.link.guard("heartbeat") as channel:
                    self._flush(channel)
                    with channel.connection.transport.having_timeout(_PENDING_READ):
                        self._read_event(channel.connection)
                    channel.connection.heartbeat_tick()
        finally:
            self.link.lock.release()

    def check(self, receipt: Receipt) -> bool:
        """True if ``receipt`` is still leased on the current connection."""
        return receipt in self.leases and self._current(receipt)

    def _current(self, receipt: Receipt) -> bool:
        """A lease survives in :attr:`leases` until the reconnect clears them, but the
        drop already voided it: RabbitMQ redelivers what the dead connection held."""
        return receipt.generation == self.link.generation

    def touch(self, receipts: Sequence[Receipt]) -> None:
        """Restart the lease clock of ``receipts``."""
        now = time.monotonic()
        for receipt in receipts:
            lease = self.leases.get(receipt)
            if lease is not None:
                lease.since = now

    def recover(self, lease_timeout: float) -> int:
        """Give back leases older than ``lease_timeout``; stop consuming when
        ``reserve`` has not been called for that long (so prefetched deliveries go
        to consumers that are alive). Returns how many leases were given back."""
        given_back = 0
        with self.link.lock:
            if not self.link.connected:
                return 0
            with self._holding("recover") as channel:
                now = time.monotonic()
                if self._buffers and now - self.last_take > lease_timeout:
                    self._unsubscribe(channel)
                given_back = self._reject(channel, [
                    receipt for receipt, lease in list(self.leases.items())
                    if now - lease.since > lease_timeout])
        return given_back

    def release(self, receipts: Sequence[Receipt]) -> None:
        """Give leased deliveries back to their queue now (``basic.reject``, requeue).
        Those no longer leased are skipped: acked, or RabbitMQ redelivers them."""
        with self.link.lock:
            if not self.link.connected:
                for receipt in receipts:
                    self.leases.pop(receipt, None)
                return
            with self._holding("release") as channel:
                self._reject(channel, receipts)

    def _reject(self, channel: Any, receipts: Sequence[Receipt]) -> int:
        given_back = 0
        for receipt in receipts:
            # pop first: a lease acked meanwhile is not given back as well.
            if self.leases.pop(receipt, None) is not None and self._current(receipt):
                channel.basic_reject(receipt.tag, requeue=True)
                given_back += 1
        return given_back

    def _unsubscribe(self, channel: Any) -> None:
        for tag in self._tags.values():
            channel.basic_cancel(tag)
        for buffer in self._buffers.values():
            for message in buffer:
                channel.basic_reject(message.delivery_info["delivery_tag"], requeue=True)
        self._buffers.clear()
        self._tags.clear()

    def close(self, timeout: float) -> None:
        """Write queued acks (best effort), then close the link."""
        with self.link.lock:
            if self.link.connected:
                with (contextlib.suppress(*DRIVER_ERRORS),
                      self.link.connection.transport.having_timeout(timeout)):
                    self._flush(self.link.channel())
            self.link.close()
