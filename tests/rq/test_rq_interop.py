"""Jobs sent through queuebridge are ordinary RQ jobs: RQ's own API reads them."""

from __future__ import annotations

import uuid

import pytest
from queuebridge_rq import RQBackend
from queuebridge_rq.records import QueueKeys
from rq.job import Job
from rq.queue import Queue
from rq.registry import (
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)
from rq.serializers import JSONSerializer

from queuebridge import Envelope, SerializationError
from queuebridge.plugins import PluginManager
from tests.helpers import wait_until
from tests.rq.servers import MakeRQ, RedisServer


@pytest.fixture
def backend(redis_server: RedisServer, make_rq: MakeRQ) -> RQBackend:
    return make_rq(redis_server.url, lease_timeout=30.0)


@pytest.fixture
def queue() -> str:
    return f"qb-interop-{uuid.uuid4().hex[:8]}"


def test_rq_fetches_a_queued_job(backend: RQBackend, queue: str) -> None:
    sent = Envelope.create("app.tasks.resize", (1, "two"), {"size": [3, 4]}, queue=queue,
                           headers={"trace": "t1"}, max_retries=2)
    backend.send(sent)
    job = Job.fetch(sent.id, connection=backend.client, serializer=JSONSerializer)
    assert job.func_name == "app.tasks.resize"
    assert list(job.args) == [1, "two"]
    assert job.kwargs == {"size": [3, 4]}
    assert job.origin == queue
    assert job.get_status() == "queued"
    assert job.meta["queuebridge"]["headers"] == {"trace": "t1"}
    assert job.meta["queuebridge"]["max_retries"] == 2
    assert backend.client.ttl(f"rq:job:{sent.id}") == -1, "a queued job must never expire"
    rq_queue = Queue(queue, connection=backend.client, serializer=JSONSerializer)
    assert rq_queue.count == 1
    assert rq_queue.job_ids == [sent.id]
    assert queue in [q.name for q in Queue.all(connection=backend.client)]


def test_lease_shows_in_started_registry_and_survives_rq_cleanup(
    backend: RQBackend, queue: str
) -> None:
    sent = Envelope.create("app.tasks.noop", queue=queue)
    backend.send(sent)
    delivery = backend.reserve([queue], timeout=5)
    assert delivery is not None
    started = StartedJobRegistry(queue, connection=backend.client, serializer=JSONSerializer)
    # ``count`` runs RQ's cleanup; it must leave a live lease alone.
    assert started.count == 1
    assert started.get_job_ids() == [sent.id]
    assert backend.job_status(sent.id) == "started"
    backend.ack(delivery)
    assert started.count == 0
    finished = FinishedJobRegistry(queue, connection=backend.client, serializer=JSONSerializer)
    assert finished.get_job_ids() == [sent.id]
    assert backend.job_status(sent.id) == "finished"
    assert 0 < backend.client.ttl(f"rq:job:{sent.id}") <= backend.options.result_ttl


def test_delayed_job_sits_in_rq_scheduled_registry(backend: RQBackend, queue: str) -> None:
    sent = Envelope.create("app.tasks.later", queue=queue, delay=3600)
    backend.send(sent)
    scheduled = ScheduledJobRegistry(queue, connection=backend.client,
                                     serializer=JSONSerializer)
    assert scheduled.get_job_ids() == [sent.id]
    assert abs(scheduled.get_scheduled_time(sent.id).timestamp() - (sent.not_before or 0)) < 1
    assert backend.job_status(sent.id) == "scheduled"
    assert backend.depth(queue) == 1


def test_dead_letters_show_in_rq_failed_registry(backend: RQBackend, queue: str) -> None:
    sent = Envelope.create("app.tasks.boom", queue=queue)
    backend.send(sent)
    delivery = backend.reserve([queue], timeout=5)
    assert delivery is not None
    backend.dead_letter(delivery, "ValueError: boom")
    failed = FailedJobRegistry(queue, connection=backend.client, serializer=JSONSerializer)
    assert failed.get_job_ids() == [sent.id]
    job = Job.fetch(sent.id, connection=backend.client, serializer=JSONSerializer)
    assert job.get_status() == "failed"
    assert job.func_name == "app.tasks.boom"


def test_missing_job_hash_is_delivered_as_malformed(backend: RQBackend, queue: str) -> None:
    backend.client.rpush(QueueKeys.for_queue(queue).queue, "gone-job")
    delivery = backend.reserve([queue], timeout=5)
    assert delivery is not None
    assert delivery.envelope is None
    assert "missing or expired" in delivery.problem
    backend.dead_letter(delivery, "malformed")
    [(dead, reason)] = backend.dead_letters(queue)
    assert (dead.job_id, reason) == ("?", "malformed")
    # The placeholder hash keeps RQ's tools working on the failed registry.
    job = Job.fetch("gone-job", connection=backend.client, serializer=JSONSerializer)
    assert job.get_status() == "failed"


def test_results_are_readable_through_rq(backend: RQBackend, queue: str) -> None:
    sent = Envelope.create("app.tasks.add", (1, 2), queue=queue)
    backend.send(sent)
    assert backend.job_result(sent.id) is None
    backend.store_result(sent, {"sum": 3})
    assert backend.job_result(sent.id) == {"sum": 3}
    job = Job.fetch(sent.id, connection=backend.client, serializer=JSONSerializer)
    assert job.return_value() == {"sum": 3}
    assert backend.job_status("never-sent") is None
    with pytest.raises(SerializationError, match=sent.id):
        backend.store_result(sent, {"not json": object()})


def test_recovered_job_is_marked_redelivered(redis_server: RedisServer, make_rq: MakeRQ,
                                             queue: str) -> None:
    backend = make_rq(redis_server.url, lease_timeout=0.01)
    backend.send(Envelope.create("app.tasks.noop", queue=queue))
    first = backend.reserve([queue], timeout=5)
    assert first is not None
    assert not first.redelivered
    wait_until(lambda: backend.recover() > 0, timeout=5, message="lease never recovered")
    again = backend.reserve([queue], timeout=5)
    assert again is not None
    assert again.redelivered
    assert again.job_id == first.job_id
    backend.ack(again)


def test_entry_point_registers_the_rq_type() -> None:
    types = PluginManager(environ={}).backend_types()
    assert types["rq"].backend_class is RQBackend
    assert types["rq"].distribution.startswith("queuebridge-rq")


def test_a_batch_lease_drains_queues_in_priority_order_and_shows_in_rq(
    backend: RQBackend, queue: str
) -> None:
    urgent, normal = f"{queue}-urgent", queue
    backend.send_many([Envelope.create("t", (i,), queue=normal) for i in range(3)])
    backend.send_many([Envelope.create("t", (i,), queue=urgent) for i in range(2)])
    # A stale second entry of one id (written behind our back) is not leased a second time.
    again = Envelope.create("t", queue=normal)
    backend.send(again)
    backend.client.rpush(QueueKeys.for_queue(normal).queue, again.id)
    leased = backend.reserve_many([urgent, normal], 10, timeout=5)
    assert [d.queue for d in leased] == [urgent] * 2 + [normal] * 4
    assert len({d.receipt for d in leased}) == 6
    assert backend.client.llen(QueueKeys.for_queue(normal).queue) == 0
    started = StartedJobRegistry(normal, connection=backend.client)
    assert len(started.get_job_ids()) == 4
    assert Job.fetch(leased[2].job_id, connection=backend.client,
                     serializer=JSONSerializer).get_status() == "started"
    for delivery in leased[:-1]:
        backend.ack(delivery)
    assert backend.reserve_many([urgent, normal], 10, timeout=0) == []


@pytest.mark.parametrize("result_ttl", [500, 0])
def test_ack_many_finishes_a_batch_the_way_ack_does(
    redis_server: RedisServer, make_rq: MakeRQ, queue: str, result_ttl: int
) -> None:
    backend = make_rq(redis_server.url, options={"result_ttl": result_ttl})
    other = f"{queue}-other"
    sent = [Envelope.create("t", (i,), queue=queue if i % 2 else other) for i in range(6)]
    backend.send_many(sent)
    leased = backend.reserve_many([queue, other], 10, timeout=5)
    assert len(leased) == 6
    backend.ack_many(leased)
    for name in (queue, other):
        assert StartedJobRegistry(name, connection=backend.client).get_job_ids() == []
        assert backend.client.zcard(QueueKeys.for_queue(name).leases) == 0
        finished = FinishedJobRegistry(name, connection=backend.client).get_job_ids()
        expected = {env.id for env in sent if env.queue == name} if result_ttl else set()
        assert set(finished) == expected
    for env in sent:
        if result_ttl:
            assert backend.job_status(env.id) == "finished"
            assert 0 < backend.client.ttl(f"rq:job:{env.id}") <= result_ttl
        else:
            assert backend.job_status(env.id) is None, "result_ttl = 0 deletes the hash"


def test_worker_keeps_return_values_in_rq_results(backend: RQBackend, queue: str) -> None:
    from queuebridge import Bridge
    from queuebridge.worker import Worker, WorkerOptions

    bridge = Bridge([backend])

    @bridge.task(name="app.tasks.add", queue=queue)
    def add(a: int, b: int) -> dict[str, int]:
        return {"sum": a + b}

    ref = add.enqueue(4, 5)
    options = WorkerOptions(queues=(queue,), burst=True, state=None, poll_timeout=0.1)
    assert Worker(bridge, options).run() == 0
    assert bridge.job_result(ref) == {"sum": 9}
    assert bridge.job_status(ref) == "finished"
    job = Job.fetch(ref.id, connection=backend.client, serializer=JSONSerializer)
    assert job.return_value() == {"sum": 9}
