"""What the broker itself drops from a work queue lands in its dead-letter queue; work
queues declared by an older version (without dead-lettering) keep working."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import amqp
import pytest
from queuebridge_kombu.amqp import AMQPBackend

from queuebridge.backend import Backend
from queuebridge.envelope import Envelope
from tests.kombu.amqp_helpers import amqp_backend, delete_queues

pytestmark = pytest.mark.usefixtures("rabbitmq")


@pytest.fixture
def queue() -> Iterator[str]:
    name = f"qb-kombu-topo-{uuid.uuid4().hex[:10]}"
    yield name
    delete_queues([name, f"{name}.dead"])


@pytest.fixture
def raw() -> Iterator[Any]:
    """A plain py-amqp channel, as another client (or an older version) would use."""
    connection = amqp.Connection("127.0.0.1:5672", connect_timeout=2, read_timeout=2,
                                 write_timeout=2)
    connection.connect()
    yield connection.channel()
    connection.close()


def _make(backends: list[Backend], **overrides: object) -> AMQPBackend:
    backend = amqp_backend(**overrides)
    assert isinstance(backend, AMQPBackend)
    backends.append(backend)
    return backend


@pytest.mark.parametrize("quorum", [False, True])
def test_a_job_the_broker_drops_lands_in_the_dead_letter_queue(
        queue: str, raw: Any, quorum: bool, amqp_backends: list[Backend]) -> None:
    backend = _make(amqp_backends, options={"quorum": quorum})
    sent = Envelope.create("t", queue=queue)
    backend.send(sent)
    message = raw.basic_get(queue, no_ack=False)
    assert message is not None
    raw.basic_reject(message.delivery_info["delivery_tag"], requeue=False)  # a broker drop

    # Quorum queues dead-letter asynchronously: wait for it as a consumer.
    arrived: list[Any] = []
    tag = raw.basic_consume(f"{queue}.dead", callback=arrived.append, no_ack=True)
    try:
        raw.connection.drain_events(timeout=5)
    finally:
        raw.basic_cancel(tag)
    assert [message.properties["message_id"] for message in arrived] == [sent.id]

    expected: dict[str, Any] = {"x-dead-letter-exchange": "",
                                "x-dead-letter-routing-key": f"{queue}.dead"}
    if quorum:
        expected |= {"x-queue-type": "quorum", "x-delivery-limit": 1000}
    # RabbitMQ accepts a redeclare only with exactly the arguments the queue has.
    raw.queue_declare(queue, durable=True, auto_delete=False, arguments=expected)


def test_a_queue_declared_without_dead_lettering_keeps_working(
        queue: str, raw: Any, amqp_backends: list[Backend]) -> None:
    raw.queue_declare(queue, durable=True, auto_delete=False)  # as older versions did
    backend = _make(amqp_backends)
    backend.send(Envelope.create("t", queue=queue))
    delivery = backend.reserve([queue], timeout=5)
    assert delivery is not None
    backend.ack(delivery)
    assert backend.depth(queue) == 0
    assert backend.legacy_queues() == {queue}
