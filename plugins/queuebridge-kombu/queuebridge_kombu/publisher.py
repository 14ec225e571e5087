"""Confirmed publishing: a batch is written at once and the confirms awaited once.

py-amqp's ``confirm_publish`` waits for the broker's ack after *every* message.
Here the channel is put in confirm mode once per connection, a batch of N
``basic.publish`` frames is written back to back, and the call returns when all N
``basic.ack`` confirms arrived (``basic.nack`` or a timeout raises): a ``send`` that
returned is on the broker, and a batch costs one round trip, not N.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import amqp
import amqp.exceptions

from queuebridge.errors import BackendError
from queuebridge_kombu.link import Link
from queuebridge_kombu.topology import Topology

__all__ = ["Outgoing", "Publisher"]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to publish: to the exchange (``bucket_ms`` 0) or a delay bucket."""

    queue: str
    body: bytes
    message_id: str
    bucket_ms: int = 0
    headers: Mapping[str, Any] = field(default_factory=dict)
    dead: bool = False
    """Publish to the queue's dead-letter queue instead."""


class Publisher:
    """Publishes on its own link (separate from the consumer's), under its lock."""

    def __init__(self, link: Link, topology: Topology) -> None:
        self.link = link
        self.topology = topology
        self._next_tag = 0
        self._unconfirmed: set[int] = set()
        self._failures: list[str] = []
        self._nacked = 0
        link.on_connect = self.on_connect

    def on_connect(self, channel: Any) -> None:
        """Enter confirm mode and listen for confirms and returns (new connection)."""
        self._next_tag = 0
        self._unconfirmed.clear()
        self._failures.clear()
        self._nacked = 0
        self.topology.reset()
        # py-amqp polls the socket before *every* publish when the broker may send
        # connection.blocked; we read those frames while awaiting confirms anyway
        # (and a blocked broker makes the confirm wait time out: fail fast).
        capabilities = channel.connection.client_properties.get("capabilities")
        if isinstance(capabilities, dict):
            capabilities["connection.blocked"] = False
        channel.confirm_select()
        channel.events["basic_ack"].add(self._on_ack)
        channel.events["basic_nack"].add(self._on_nack)
        channel.events["basic_return"].add(self._on_return)

    def _on_ack(self, tag: int, multiple: bool) -> None:
        if multiple:
            self._unconfirmed = {t for t in self._unconfirmed if t > tag}
        else:
            self._unconfirmed.discard(tag)

    def _on_nack(self, tag: int, multiple: bool) -> None:
        self._nacked += 1
        self._on_ack(tag, multiple)

    def _on_return(self, exc: Exception, exchange: str, routing_key: str, message: Any) -> None:
        self._failures.append(f"unroutable to {routing_key!r}: {exc}")

    def publish(self, messages: Sequence[Outgoing], operation: str = "send") -> None:
        """Publish ``messages`` and wait for every confirm. Raises
        ``BackendUnavailable`` (broker down, hung past the timeout, nack) or
        ``BackendError`` (unroutable)."""
        with self.link.lock, self.link.guard(operation) as channel:
            self._failures.clear()
            self._nacked = 0
            for message in messages:
                self._publish_one(channel, message)
            self._await_confirms()
            if self._nacked:
                # The broker could not take the message (disk alarm, overflow ...):
                # for the router that is "unavailable", so it fails over.
                raise amqp.exceptions.MessageNacked(f"{self._nacked} message(s) nacked")
            if self._failures:
                # A returned message means our declarations are stale (a queue was
                # deleted): declare again next time.
                self.topology.reset()
                failures, self._failures = self._failures, []
                raise BackendError(f"{operation}: {failures[0]} ({len(failures)} failed)",
                                   backend=self.link.settings.name)

    def _publish_one(self, channel: Any, message: Outgoing) -> None:
        if message.dead:
            self.topology.ensure_queue(channel, message.queue)
            exchange, key = "", f"{message.queue}.dead"
        elif message.bucket_ms:
            exchange, key = "", self.topology.ensure_bucket(
                channel, message.queue, message.bucket_ms)
        else:
            self.topology.ensure_queue(channel, message.queue)
            exchange, key = self.topology.exchange, message.queue
        amqp_message = amqp.Message(
            message.body,
            content_type="application/json",
            delivery_mode=2,
            message_id=message.message_id,
            application_headers=dict(message.headers),
        )
        channel.basic_publish(amqp_message, exchange=exchange, routing_key=key, mandatory=True)
        self._next_tag += 1
        self._unconfirmed.add(self._next_tag)

    def _await_confirms(self) -> None:
        deadline = time.monotonic() + self.link.settings.timeout
        connection = self.link.connection
        while self._unconfirmed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"{len(self._unconfirmed)} publisher confirms missing after "
                    f"{self.link.settings.timeout}s")
            connection.drain_events(timeout=remaining)
