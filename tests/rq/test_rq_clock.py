"""Leases and due times follow the Redis server's clock, not the calling host's.

A host with a skewed clock is simulated by shifting ``time.time`` while that host's
backend instance makes its call (the other instance runs on the real clock).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

import pytest
from queuebridge_rq import RQBackend
from rq.job import Job
from rq.serializers import JSONSerializer

from queuebridge import Envelope
from tests.rq.servers import MakeRQ, RedisServer

LEASE = 30.0
SKEW = LEASE + 1.0


@contextmanager
def clock_shifted(seconds: float) -> Iterator[None]:
    """The backend module's ``time.time`` runs ``seconds`` ahead (negative: behind)."""
    real = time.time
    with mock.patch("queuebridge_rq.backend.time.time", lambda: real() + seconds):
        yield


@pytest.fixture
def queue() -> str:
    return f"qb-clock-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def hosts(redis_server: RedisServer, make_rq: MakeRQ) -> tuple[RQBackend, RQBackend]:
    """Two hosts' backends on the same Redis: ``(on time, skewed)``."""
    return (make_rq(redis_server.url, lease_timeout=LEASE),
            make_rq(redis_server.url, lease_timeout=LEASE))


def test_a_host_whose_clock_is_ahead_does_not_recover_running_jobs(
    hosts: tuple[RQBackend, RQBackend], queue: str
) -> None:
    worker, ahead = hosts
    worker.send(Envelope.create("t", queue=queue))
    delivery = worker.reserve([queue], timeout=5)
    assert delivery is not None
    worker.touch([delivery])
    with clock_shifted(SKEW):
        assert ahead.recover() == 0, "a lease of a running job was recovered"
        assert ahead.reserve([queue], timeout=0) is None, "a running job was handed out twice"
    worker.ack(delivery)


def test_a_host_whose_clock_is_behind_does_not_shorten_a_lease_by_touching_it(
    hosts: tuple[RQBackend, RQBackend], queue: str
) -> None:
    behind, other = hosts
    behind.send(Envelope.create("t", queue=queue))
    with clock_shifted(-SKEW):
        delivery = behind.reserve([queue], timeout=5)
        assert delivery is not None
        behind.touch([delivery])
    assert other.recover() == 0, "a touched lease was already expired"
    behind.ack(delivery)


def test_a_host_whose_clock_is_ahead_does_not_run_delayed_jobs_early(
    hosts: tuple[RQBackend, RQBackend], queue: str
) -> None:
    producer, ahead = hosts
    delayed = Envelope.create("t", queue=queue, delay=LEASE)
    producer.send(delayed)
    with clock_shifted(SKEW):
        assert ahead.reserve([queue], timeout=0) is None, "a delayed job ran early"
        assert ahead.recover() == 0, "a delayed job was promoted early"
    assert producer.job_status(delayed.id) == "scheduled"


def test_a_retry_by_a_host_whose_clock_is_ahead_keeps_its_backoff(
    hosts: tuple[RQBackend, RQBackend], queue: str
) -> None:
    producer, ahead = hosts
    sent = Envelope.create("t", queue=queue, max_retries=3)
    producer.send(sent)
    # The next attempt's not_before was set on the real clock, the retry runs ahead of it.
    later = sent.next_attempt(delay=LEASE)
    with clock_shifted(SKEW):
        delivery = ahead.reserve([queue], timeout=5)
        assert delivery is not None
        ahead.retry(delivery, later)
        assert ahead.reserve([queue], timeout=0) is None, "a backed-off retry ran at once"
    job = Job.fetch(sent.id, connection=producer.client, serializer=JSONSerializer)
    assert job.get_status() == "scheduled"


def test_acked_and_failed_registries_are_scored_by_the_server_clock(
    hosts: tuple[RQBackend, RQBackend], queue: str
) -> None:
    _, ahead = hosts
    sent = [Envelope.create("t", (i,), queue=queue) for i in range(2)]
    ahead.send_many(sent)
    with clock_shifted(10 * 3600):
        first, second = ahead.reserve_many([queue], 2, timeout=5)
        ahead.ack(first)
        ahead.dead_letter(second, "boom")
    server_now = float(ahead.client.time()[0])
    keys = ahead.queue_keys(queue)
    finished = ahead.client.zscore(keys.finished, first.job_id)
    failed = ahead.client.zscore(keys.failed, second.job_id)
    assert finished is not None and finished <= server_now + ahead.options.result_ttl + 5
    assert failed is not None and failed <= server_now + ahead.options.failure_ttl + 5


def test_a_resend_by_a_host_whose_clock_is_ahead_keeps_the_delay(
    hosts: tuple[RQBackend, RQBackend], queue: str
) -> None:
    _, ahead = hosts
    delayed = Envelope.create("t", queue=queue, delay=LEASE)  # on the producer's clock
    with clock_shifted(SKEW):
        ahead.send(delayed)  # e.g. a spool replay on another host
        assert ahead.reserve([queue], timeout=0) is None, "a delayed job ran early"
    assert ahead.job_status(delayed.id) == "scheduled"
