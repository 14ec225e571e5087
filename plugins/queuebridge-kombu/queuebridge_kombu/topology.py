"""Queues, exchange and delay buckets on RabbitMQ, declared once per connection.

For a queue ``q``:

* ``q``: durable (``x-queue-type: quorum`` with ``quorum = true``), bound to the
  durable direct exchange (``queuebridge`` by default) with routing key ``q``; what
  the broker itself drops from it (a quorum queue's delivery limit, a reject without
  requeue) is dead-lettered into ``q.dead`` (:func:`work_queue_arguments`). A ``q``
  declared by an older version without those arguments is kept as it is: RabbitMQ
  refuses to change a queue's arguments, and the probe runs on a side channel so
  the refusal does not close the channel in use;
* ``q.dead``: durable dead-letter queue (same type); each message carries its
  reason in the ``x-qb-reason`` header;
* ``q.delay.<ms>``: classic durable delay buckets with ``x-message-ttl = <ms>``
  that dead-letter into the exchange with routing key ``q``; ``x-expires`` makes
  unused buckets vanish. Delays are rounded *down* to a bounded set of buckets and
  a job released early is re-delayed by ``reserve`` (``not_before`` is
  authoritative), so a job never runs early and the bucket count stays bounded.
"""

from __future__ import annotations

import bisect
import time
from typing import Any, Final

import amqp.exceptions

__all__ = ["DELAY_BUCKETS_MS", "QUORUM_DELIVERY_LIMIT", "Topology", "bucket_for", "dead_queue",
           "delay_queue", "work_queue_arguments"]

DELAY_BUCKETS_MS: Final = (
    50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 120_000, 300_000,
    600_000, 1_800_000, 3_600_000, 7_200_000, 21_600_000, 43_200_000, 86_400_000,
)
QUORUM_DELIVERY_LIMIT: Final = 1000
"""Deliveries of one message a quorum work queue allows before it dead-letters it
(RabbitMQ 4 defaults to 20, counting every redelivery after a lost connection or a
``recover``)."""
_EXPIRES_MARGIN_MS: Final = 120_000
_REDECLARE_AFTER: Final = 60.0
"""Seconds: a bucket is re-declared this often so its ``x-expires`` clock (which
publishing does not reset) always outlives the messages put in it."""


def bucket_for(delay: float) -> int:
    """The largest bucket (ms) not longer than ``delay`` seconds; the smallest bucket
    for shorter delays (it releases at most that much late)."""
    index = bisect.bisect_right(DELAY_BUCKETS_MS, int(delay * 1000)) - 1
    return DELAY_BUCKETS_MS[max(index, 0)]


def dead_queue(queue: str) -> str:
    """Name of the dead-letter queue of ``queue``."""
    return f"{queue}.dead"


def delay_queue(queue: str, bucket_ms: int) -> str:
    """Name of a delay bucket of ``queue``."""
    return f"{queue}.delay.{bucket_ms}"


def work_queue_arguments(queue: str, *, quorum: bool) -> dict[str, Any]:
    """Declaration arguments of the work queue ``queue``: what the broker drops from it
    goes to its dead-letter queue (through the default exchange)."""
    arguments: dict[str, Any] = {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": dead_queue(queue),
    }
    if quorum:
        arguments |= {"x-queue-type": "quorum", "x-delivery-limit": QUORUM_DELIVERY_LIMIT}
    return arguments


class Topology:
    """What has been declared on the current connection (reset on reconnect)."""

    def __init__(self, exchange: str, *, quorum: bool) -> None:
        self.exchange = exchange
        self._quorum = quorum
        self._queues: set[str] = set()
        self._buckets: dict[str, float] = {}
        self._exchange_declared = False
        self._side: Any = None
        self.seen: set[str] = set()
        """Every queue name this process declared (kept across reconnects)."""
        self.legacy: set[str] = set()
        """Work queues found declared without dead-lettering (by an older version)."""

    def reset(self) -> None:
        """Forget declarations: a new connection declares again."""
        self._queues.clear()
        self._buckets.clear()
        self._exchange_declared = False
        self._side = None

    def _arguments(self) -> dict[str, Any]:
        return {"x-queue-type": "quorum"} if self._quorum else {}

    def ensure_queue(self, channel: Any, queue: str) -> None:
        """Declare ``queue`` and its dead-letter queue (once per connection)."""
        if queue in self._queues:
            return
        if not self._exchange_declared:
            channel.exchange_declare(self.exchange, "direct", durable=True, auto_delete=False)
            self._exchange_declared = True
        self._declare_work_queue(channel, queue)
        channel.queue_bind(queue, self.exchange, routing_key=queue)
        channel.queue_declare(dead_queue(queue), durable=True, auto_delete=False,
                              arguments=self._arguments())
        self._queues.add(queue)
        self.seen.update((queue, dead_queue(queue)))

    def _declare_work_queue(self, channel: Any, queue: str) -> None:
        try:
            self._side_channel(channel).queue_declare(
                queue, durable=True, auto_delete=False,
                arguments=work_queue_arguments(queue, quorum=self._quorum))
        except amqp.exceptions.PreconditionFailed:
            # Declared without dead-lettering (see "Migrating" in docs/backends/kombu.md):
            # keep it. A changed queue type still fails here, on the channel in use.
            channel.queue_declare(queue, durable=True, auto_delete=False,
                                  arguments=self._arguments())
            self.legacy.add(queue)
        else:
            self.legacy.discard(queue)

    def _side_channel(self, channel: Any) -> Any:
        """A channel beside ``channel`` for declarations the broker may refuse (it
        closes the channel; py-amqp reopens it, without confirm mode or consumers)."""
        side = self._side
        if side is None or side.connection is not channel.connection or not side.is_open:
            side = self._side = channel.connection.channel()
        return side

    def ensure_bucket(self, channel: Any, queue: str, bucket_ms: int) -> str:
        """Declare (or refresh) a delay bucket of ``queue``; return its name."""
        self.ensure_queue(channel, queue)
        name = delay_queue(queue, bucket_ms)
        declared = self._buckets.get(name)
        if declared is None or time.monotonic() - declared > _REDECLARE_AFTER:
            self._declare_bucket(channel, queue, bucket_ms)
            self._buckets[name] = time.monotonic()
            self.seen.add(name)
        return name

    def _declare_bucket(self, channel: Any, queue: str, bucket_ms: int) -> None:
        channel.queue_declare(
            delay_queue(queue, bucket_ms), durable=True, auto_delete=False,
            arguments={
                "x-message-ttl": bucket_ms,
                "x-dead-letter-exchange": self.exchange,
                "x-dead-letter-routing-key": queue,
                "x-expires": bucket_ms + _EXPIRES_MARGIN_MS,
            },
        )
