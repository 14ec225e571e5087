"""One id, one copy: a re-sent id never interferes with the copy Redis already holds.

Re-sends happen for real: a spool replay, or a resend after a deadline whose send did
reach Redis. Stale duplicates (an older version's, or a tool's) are written by hand.
"""

from __future__ import annotations

import uuid

import pytest
from queuebridge_rq import RQBackend
from queuebridge_rq.records import QueueKeys

from queuebridge import Envelope
from tests.rq.servers import MakeRQ, RedisServer


@pytest.fixture
def queue() -> str:
    return f"qb-dup-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def backend(redis_server: RedisServer, make_rq: MakeRQ) -> RQBackend:
    return make_rq(redis_server.url, lease_timeout=30.0)


def _queued(backend: RQBackend, queue: str) -> list[str]:
    return [raw.decode() for raw in backend.client.lrange(QueueKeys.for_queue(queue).queue, 0, -1)]


def test_a_resend_of_a_running_job_leaves_it_alone(backend: RQBackend, queue: str) -> None:
    sent = Envelope.create("t", queue=queue, max_retries=3)
    backend.send(sent)
    running = backend.reserve([queue], timeout=5)
    assert running is not None
    backend.send(sent)
    backend.send_many([sent])
    assert _queued(backend, queue) == [], "a second copy was queued"
    assert backend.job_status(sent.id) == "started", "the running copy's hash was rewritten"
    backend.retry(running, sent.next_attempt(delay=300))
    assert backend.reserve([queue], timeout=0) is None, "the retry's backoff was skipped"
    assert backend.job_status(sent.id) == "scheduled"


def test_a_resend_does_not_dead_letter_a_job_acked_with_result_ttl_0(
    redis_server: RedisServer, make_rq: MakeRQ, queue: str
) -> None:
    backend = make_rq(redis_server.url, options={"result_ttl": 0})
    sent = Envelope.create("t", queue=queue)
    backend.send(sent)
    running = backend.reserve([queue], timeout=5)
    assert running is not None
    backend.send(sent)
    backend.ack(running)
    assert backend.reserve([queue], timeout=0) is None, "a duplicate was left to dead-letter"


def test_a_resend_of_a_queued_or_scheduled_job_adds_no_copy(backend: RQBackend,
                                                             queue: str) -> None:
    ready = Envelope.create("t", (1,), queue=queue)
    later = Envelope.create("t", (2,), queue=queue, delay=300)
    backend.send_many([ready, later, ready])
    backend.send_many([ready, later])
    assert _queued(backend, queue) == [ready.id]
    assert backend.client.zcard(QueueKeys.for_queue(queue).scheduled) == 1
    assert backend.job_status(later.id) == "scheduled"


def test_a_resend_after_completion_is_queued_again(backend: RQBackend, queue: str) -> None:
    sent = Envelope.create("t", queue=queue)
    backend.send(sent)
    first = backend.reserve([queue], timeout=5)
    assert first is not None
    backend.ack(first)
    assert backend.client.ttl(f"rq:job:{sent.id}") > 0
    backend.send(sent)  # a late replay: the worker's dedup recognises the finished id
    assert backend.job_status(sent.id) == "queued"
    assert backend.client.ttl(f"rq:job:{sent.id}") == -1, "the finished expiry was kept"
    again = backend.reserve([queue], timeout=5)
    assert again is not None
    assert again.envelope == sent


def test_stale_queue_entries_are_dropped_not_run(backend: RQBackend, queue: str) -> None:
    keys = QueueKeys.for_queue(queue)
    waiting, finished = (Envelope.create("t", (i,), queue=queue, max_retries=1)
                         for i in range(2))
    backend.send_many([waiting, finished])
    first, second = backend.reserve_many([queue], 2, timeout=5)
    backend.retry(first, waiting.next_attempt(delay=300))
    backend.ack(second)
    # Stale entries of a job waiting for its retry and of a finished one.
    backend.client.rpush(keys.queue, waiting.id, finished.id)
    assert backend.reserve([queue], timeout=0) is None
    assert backend.job_status(waiting.id) == "scheduled"
    assert backend.job_status(finished.id) == "finished"
    assert backend.dead_letters(queue) == []


def test_a_stale_lease_does_not_resurrect_a_finished_job(backend: RQBackend,
                                                         queue: str) -> None:
    keys = QueueKeys.for_queue(queue)
    sent = Envelope.create("t", queue=queue)
    backend.send(sent)
    delivery = backend.reserve([queue], timeout=5)
    assert delivery is not None
    backend.ack(delivery)
    backend.client.zadd(keys.leases, {f"{sent.id}:stale-1": 0})
    assert backend.recover() == 0
    assert _queued(backend, queue) == []
    assert backend.client.zcard(keys.leases) == 0
    assert backend.job_status(sent.id) == "finished"


def test_a_stale_scheduled_entry_does_not_run_a_job_again(backend: RQBackend,
                                                          queue: str) -> None:
    keys = QueueKeys.for_queue(queue)
    sent = Envelope.create("t", queue=queue)
    backend.send(sent)
    backend.client.zadd(keys.scheduled, {sent.id: 0})
    delivery = backend.reserve([queue], timeout=5)
    assert delivery is not None
    assert backend.reserve([queue], timeout=0) is None, "the stale entry ran a second copy"
    backend.ack(delivery)


@pytest.mark.parametrize("result_ttl", [500, 0])
def test_a_retry_sent_as_the_next_attempt_survives_the_ack_of_the_running_one(
    redis_server: RedisServer, make_rq: MakeRQ, queue: str, result_ttl: int
) -> None:
    """The worker's retry path: the router sends the next attempt (same id), then the
    worker acks the failed one."""
    backend = make_rq(redis_server.url, options={"result_ttl": result_ttl})
    sent = Envelope.create("t", queue=queue, max_retries=3)
    backend.send(sent)
    running = backend.reserve([queue], timeout=5)
    assert running is not None
    following = sent.next_attempt()
    backend.send(following)
    backend.ack(running)
    assert backend.job_status(sent.id) == "queued", "the ack finished the next attempt"
    again = backend.reserve([queue], timeout=5)
    assert again is not None
    assert again.envelope == following
    backend.send(sent)  # a late replay of the earlier attempt changes nothing
    assert backend.reserve([queue], timeout=0) is None
    backend.ack(again)
    assert backend.job_status(sent.id) == ("finished" if result_ttl else None)
