"""Counting the jobs that wait in a queue on RabbitMQ, without the management plugin.

A queue's depth is the ready count of ``q`` plus the messages in each of its delay
buckets (``q.delay.<ms>`` for every bucket of
:data:`~queuebridge_kombu.topology.DELAY_BUCKETS_MS`, whoever declared them). Each
count is a passive ``queue.declare``: it creates nothing and answers with the
queue's ready message count. Leased and prefetched (unacked) deliveries are not
counted.

A passive declare of a queue that does not exist makes the broker *close the
channel* (404). That must not take the publishing channel (confirm mode, declared
topology) with it, so the counts run on a channel of their own, which py-amqp
reopens after each 404.
"""

from __future__ import annotations

import time
from typing import Any

import amqp.exceptions

from queuebridge_kombu.link import Link
from queuebridge_kombu.topology import DELAY_BUCKETS_MS, delay_queue

__all__ = ["DepthCounter", "counted_queues"]


def counted_queues(queue: str) -> list[str]:
    """The queues whose messages make up the depth of ``queue``."""
    return [queue, *(delay_queue(queue, bucket_ms) for bucket_ms in DELAY_BUCKETS_MS)]


class DepthCounter:
    """Counts on a dedicated channel of ``link``. Use under ``link.lock`` and
    ``link.guard`` (which connect, bound the time and translate driver errors)."""

    def __init__(self, link: Link) -> None:
        self._link = link
        self._channel: Any = None
        self._generation = -1

    def depth(self, queue: str) -> int:
        """Ready plus delayed jobs of ``queue``; a missing queue or bucket counts 0.
        Raises ``TimeoutError`` when the counts take longer than ``timeout`` in all."""
        timeout = self._link.settings.timeout
        deadline = time.monotonic() + timeout
        total = 0
        for name in counted_queues(queue):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"depth of {queue!r} not counted within {timeout}s")
            total += self._count(name, remaining)
        return total

    def _count(self, name: str, remaining: float) -> int:
        # Each read may take only what is left of the one deadline (a slow broker
        # would otherwise get ``timeout`` per round trip, some 40 of them).
        with self._link.connection.transport.having_timeout(remaining):
            channel = self._side_channel()
            try:
                result = channel.queue_declare(name, passive=True)
            except amqp.exceptions.NotFound:
                return 0  # py-amqp has reopened the channel the broker closed
        return int(result.message_count)

    def _side_channel(self) -> Any:
        self._link.channel()  # connects if needed (the link's own channel comes first)
        if self._channel is None or self._generation != self._link.generation \
                or not self._channel.is_open:
            self._channel = self._link.connection.channel()
            self._generation = self._link.generation
        return self._channel
