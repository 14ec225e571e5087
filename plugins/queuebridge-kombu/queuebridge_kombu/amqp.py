"""RabbitMQ through Kombu and py-amqp, done properly.

* durable queues (quorum on request), persistent messages, publisher confirms on
  every send, one confirm wait per batch (:mod:`~queuebridge_kombu.publisher`);
* manual ack after the task finished, a prefetch limit, batch leases popped from
  the prefetch buffer, redelivery by RabbitMQ when a consumer dies
  (:mod:`~queuebridge_kombu.consumer`);
* ``depth`` from passive declares of the queue and all its delay buckets
  (:mod:`~queuebridge_kombu.depth`);
* a dead-letter queue per queue, delayed jobs in TTL bucket queues
  (:mod:`~queuebridge_kombu.topology`);
* two connections (publisher, consumer), each used under its own lock; every call
  bounded by the configured timeouts; every driver error translated
  (:mod:`~queuebridge_kombu.link`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from typing import Any, ClassVar, Final

from queuebridge.backend import BackendSettings, Capabilities, Delivery, lost_leases
from queuebridge.envelope import Envelope
from queuebridge.errors import EnvelopeError, LeaseLost, QueueBridgeError
from queuebridge_kombu.base import KombuBackend
from queuebridge_kombu.consumer import Consumer, Receipt
from queuebridge_kombu.depth import DepthCounter
from queuebridge_kombu.link import Link
from queuebridge_kombu.publisher import Outgoing, Publisher
from queuebridge_kombu.topology import Topology, bucket_for, dead_queue

__all__ = ["REASON_HEADER", "AMQPBackend"]

REASON_HEADER: Final = "x-qb-reason"
_EARLY_SLACK: Final = 0.005
"""Seconds: a delivery due within this is run rather than re-delayed."""


class AMQPBackend(KombuBackend):
    """RabbitMQ (``amqp://``, ``amqps://``, ``pyamqp://``; ``;`` for alternates)."""

    capabilities: ClassVar[Capabilities] = Capabilities(delayed=True, batch_send=True)

    def __init__(self, settings: BackendSettings) -> None:
        super().__init__(settings)
        opts = self.options
        self._topology = Topology(opts.exchange, quorum=opts.quorum)
        self._consumer_topology = Topology(opts.exchange, quorum=opts.quorum)
        self._publisher = Publisher(Link(settings, opts), self._topology)
        self._consumer = Consumer(Link(settings, opts, heartbeat=opts.heartbeat),
                                  self._consumer_topology, opts.prefetch)
        self._consumer.link.on_connect = self._on_consumer_connect
        self._depth_counter = DepthCounter(self._publisher.link)
        self._stop = threading.Event()
        self._keepalive: threading.Thread | None = None

    def declared_queues(self) -> set[str]:
        """Every queue name this backend declared (work, dead-letter, delay buckets)."""
        return self._topology.seen | self._consumer_topology.seen

    def legacy_queues(self) -> set[str]:
        """Work queues found declared without dead-lettering (by an earlier version):
        what the broker drops from them vanishes (see docs/backends/kombu.md)."""
        return self._topology.legacy | self._consumer_topology.legacy

    @property
    def idle_probes(self) -> int:
        """Round trips made so far to check that an idle broker still answers
        (diagnostics: none are made while deliveries flow)."""
        return self._consumer.probes

    @property
    def prefetch_window(self) -> int:
        """The ``basic.qos`` prefetch count in force: ``options.prefetch``, widened to
        twice the largest ``reserve_many`` limit asked for."""
        return self._consumer.window

    # -- sending -------------------------------------------------------------------

    def _outgoing(self, envelope: Envelope, body: bytes | None = None) -> Outgoing:
        delay = (envelope.not_before or 0.0) - time.time()
        bucket = bucket_for(delay) if delay > _EARLY_SLACK else 0
        return Outgoing(envelope.queue, envelope.encode() if body is None else body,
                        envelope.id, bucket)

    def _send(self, envelope: Envelope) -> None:
        self._publisher.publish([self._outgoing(envelope)])

    def _send_many(self, envelopes: Sequence[Envelope]) -> None:
        self._publisher.publish([self._outgoing(env) for env in envelopes], "send_many")

    # -- leasing -------------------------------------------------------------------

    def _on_consumer_connect(self, channel: Any) -> None:
        self._consumer.on_connect(channel)
        if self._keepalive is None and self.options.heartbeat > 0:
            self._keepalive = threading.Thread(
                target=self._keep_alive, name=f"queuebridge-kombu-heartbeat-{self.name}",
                daemon=True)
            self._keepalive.start()

    def _keep_alive(self) -> None:
        interval = self.options.heartbeat / 3
        while not self._stop.wait(interval):
            with contextlib.suppress(QueueBridgeError):
                self._consumer.keepalive()  # a failure dropped the link: reserve reconnects

    def _reserve(self, queues: Sequence[str], timeout: float) -> Delivery | None:
        leased = self._reserve_many(queues, 1, timeout)
        return leased[0] if leased else None

    def _reserve_many(self, queues: Sequence[str], limit: int, timeout: float
                      ) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        while True:
            taken = self._consumer.take(queues, limit, max(0.0, deadline - time.monotonic()))
            if not taken:
                return []
            deliveries = [self._delivery(*item) for item in taken]
            early = [d for d in deliveries if d.envelope is not None and self._early(d.envelope)]
            if not early:
                return deliveries
            due = [d for d in deliveries if d not in early]
            self._delay_again(early, due)
            if due:
                return due

    def _delay_again(self, early: list[Delivery], due: list[Delivery]) -> None:
        """A delay bucket released ``early`` too soon (buckets round down): put them back
        for the rest of their delay (one confirm wait); ``not_before`` is authoritative.

        If that publish fails, ``early`` goes back to its queue at once (not stranded
        until ``lease_timeout``); the error is raised unless ``due`` is handed out.
        """
        try:
            self._publisher.publish(
                [self._outgoing(d.envelope, d.raw) for d in early if d.envelope is not None],
                "reserve")
        except QueueBridgeError:
            self._consumer.release([d.receipt for d in early])
            if not due:
                raise
            return
        # A lease lost meanwhile is redelivered by RabbitMQ besides the re-delayed copy:
        # a duplicate with the same id, never a loss (and no reason to fail the batch).
        self._consumer.settle_many([d.receipt for d in early])

    @staticmethod
    def _early(envelope: Envelope) -> bool:
        return (envelope.not_before or 0.0) - time.time() > _EARLY_SLACK

    def _delivery(self, message: Any, queue: str, receipt: Receipt) -> Delivery:
        body = message.body
        raw = body if isinstance(body, bytes) else str(body).encode()
        try:
            envelope: Envelope | None = Envelope.decode(raw)
            problem = ""
        except EnvelopeError as exc:
            envelope, problem = None, str(exc)
        redelivered = bool(message.delivery_info.get("redelivered"))
        return Delivery(self.name, queue, receipt, envelope, raw, problem, redelivered)

    def _settle(self, delivery: Delivery) -> None:
        if not self._consumer.settle(delivery.receipt):
            raise self._lost(delivery)

    def _lost(self, delivery: Delivery) -> LeaseLost:
        return LeaseLost(
            f"job {delivery.job_id}: its lease ended with the connection that granted it "
            "or was recovered (RabbitMQ redelivers it)", backend=self.name)

    def _held(self, delivery: Delivery) -> None:
        # Checked before publishing a follow-up, so a lost lease does not also
        # produce a second copy of the job.
        if not self._consumer.check(delivery.receipt):
            raise self._lost(delivery)

    def _ack(self, delivery: Delivery) -> None:
        self._settle(delivery)

    def _ack_many(self, deliveries: Sequence[Delivery]) -> None:
        held = self._consumer.settle_many([delivery.receipt for delivery in deliveries])
        lost = [d for d, ok in zip(deliveries, held, strict=True) if not ok]
        if lost:
            raise lost_leases(self.name, lost, len(deliveries))

    def _retry(self, delivery: Delivery, envelope: Envelope) -> None:
        self._held(delivery)
        self._publisher.publish([self._outgoing(envelope)], "retry")
        self._settle(delivery)

    def _touch(self, deliveries: Sequence[Delivery]) -> None:
        self._consumer.touch([d.receipt for d in deliveries])

    def _dead_letter(self, delivery: Delivery, reason: str) -> None:
        self._held(delivery)
        message = Outgoing(delivery.queue, delivery.raw, delivery.job_id,
                           headers={REASON_HEADER: reason}, dead=True)
        self._publisher.publish([message], "dead_letter")
        self._settle(delivery)

    def _dead_letters(self, queue: str, limit: int) -> list[tuple[Delivery, str]]:
        link = self._publisher.link
        with link.lock, link.guard("dead_letters") as channel:
            self._topology.ensure_queue(channel, queue)
            found: list[tuple[Delivery, str]] = []
            while len(found) < limit:
                message = channel.basic_get(dead_queue(queue), no_ack=False)
                if message is None:
                    break
                tag = message.delivery_info["delivery_tag"]
                delivery = self._delivery(message, queue, Receipt(-1, tag))
                headers = message.properties.get("application_headers") or {}
                found.append((delivery, str(headers.get(REASON_HEADER, ""))))
            for delivery, _ in found:
                # Only a look: RabbitMQ puts each one back at its old position.
                channel.basic_reject(delivery.receipt.tag, requeue=True)
            return found

    # -- health and housekeeping ------------------------------------------------------

    def _ping(self) -> None:
        link = self._publisher.link
        with link.lock, link.guard("ping") as channel:
            channel.exchange_declare(self.options.exchange, "direct", durable=True,
                                     auto_delete=False)

    def _depth(self, queue: str) -> int:
        link = self._publisher.link
        with link.lock, link.guard("depth"):
            return self._depth_counter.depth(queue)

    def _recover(self) -> int:
        return self._consumer.recover(self.settings.lease_timeout)

    def _close(self) -> None:
        self._stop.set()
        self._consumer.close(self.settings.timeout)
        with self._publisher.link.lock:
            self._publisher.link.close()
        if self._keepalive is not None:
            self._keepalive.join(timeout=self.settings.timeout)
