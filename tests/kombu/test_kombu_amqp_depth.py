"""AMQP ``depth``: the ready queue plus every delay bucket, whoever declared them;
passive declares that create nothing and leave the publishing channel alone."""

from __future__ import annotations

import uuid

import amqp.exceptions
import kombu
import pytest
from queuebridge_kombu.depth import counted_queues

from queuebridge.backend import Backend
from queuebridge.envelope import Envelope
from tests.kombu.amqp_helpers import RABBIT_URL, amqp_backend

pytestmark = pytest.mark.usefixtures("rabbitmq")


@pytest.fixture
def queue() -> str:
    return f"qb-kombu-depth-{uuid.uuid4().hex[:10]}"


def _exists(name: str) -> bool:
    with kombu.Connection(RABBIT_URL, connect_timeout=2) as conn:
        try:
            conn.channel().queue_declare(name, passive=True)
        except amqp.exceptions.NotFound:
            return False
        return True


def test_depth_counts_ready_and_every_delay_bucket(amqp_backends: list[Backend],
                                                  queue: str) -> None:
    producer, observer = amqp_backend(), amqp_backend()
    amqp_backends += [producer, observer]
    producer.send_many([Envelope.create("t", queue=queue) for _ in range(3)])
    producer.send_many([Envelope.create("t", queue=queue, delay=delay)
                        for delay in (30, 600, 7_200)])
    # The observer declared no bucket itself: it still sees the delayed jobs.
    assert observer.depth(queue) == 6
    # The 404s of the missing buckets did not break the observer's publishing.
    observer.send(Envelope.create("t", queue=queue, delay=60))
    assert observer.depth(queue) == 7
    assert producer.depth(queue) == 7


def test_depth_of_an_unknown_queue_is_zero_and_creates_nothing(
        amqp_backends: list[Backend], queue: str) -> None:
    backend = amqp_backend()
    amqp_backends.append(backend)
    assert backend.depth(queue) == 0
    assert not _exists(queue)
    backend.send(Envelope.create("t", queue=queue))
    assert backend.depth(queue) == 1


def test_counted_queues_are_the_queue_and_its_buckets() -> None:
    names = counted_queues("jobs")
    assert names[0] == "jobs"
    assert "jobs.delay.50" in names and "jobs.delay.86400000" in names
    assert "jobs.dead" not in names
