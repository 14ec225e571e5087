"""The Redis worker state store: the SQLite store's semantics, against private redis-servers."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from queuebridge_rq import RedisWorkerState
from queuebridge_rq.worker_state import RedisHeartbeats, RedisStateClient

from queuebridge.dedup import Claim, StoreUnavailable
from queuebridge.errors import SerializationError
from queuebridge.heartbeat import WorkerInfo
from queuebridge.plugins import PluginManager
from queuebridge.state import open_worker_state
from queuebridge.testing.plugin import free_port
from tests.rq.servers import RedisServer

EXPIRED = 0.0
"""A lease or TTL of zero: stored for 1 ms, so a short sleep outlives it."""


def expire() -> None:
    time.sleep(0.01)


@pytest.fixture
def state(redis_server: RedisServer) -> Iterator[RedisWorkerState]:
    state = RedisWorkerState.from_url(redis_server.url)
    yield state
    state.close()


@pytest.fixture
def job() -> str:
    return f"job-{uuid.uuid4().hex}"


def test_claim_then_done_then_duplicate(state: RedisWorkerState, job: str) -> None:
    store = state.dedup
    assert store.claim(job, 1, "w1", lease=60) is Claim.CLAIMED
    assert store.claim(job, 1, "w2", lease=60) is Claim.BUSY
    store.finish(job, 1, ttl=60)
    assert store.claim(job, 1, "w2", lease=60) is Claim.DONE
    assert store.claim(job, 2, "w2", lease=60) is Claim.CLAIMED


def test_expired_claim_of_a_dead_owner_is_taken_over(state: RedisWorkerState, job: str) -> None:
    store = state.dedup
    assert store.claim(job, 1, "dead", lease=EXPIRED) is Claim.CLAIMED
    expire()
    assert store.claim(job, 1, "alive", lease=60) is Claim.CLAIMED
    store.finish(job, 1, ttl=EXPIRED)
    assert store.claim(job, 1, "later", lease=60) is Claim.CLAIMED


def test_renew_and_release_only_touch_the_owner(state: RedisWorkerState, job: str) -> None:
    store = state.dedup
    assert store.claim(job, 1, "w1", lease=0.05) is Claim.CLAIMED
    store.renew([(job, 1)], "w2", lease=60)
    time.sleep(0.1)
    assert store.claim(job, 1, "w2", lease=0.05) is Claim.CLAIMED  # not renewed: expired
    store.renew([(job, 1)], "w2", lease=60)
    time.sleep(0.1)
    store.release(job, 1, "w1")
    assert store.claim(job, 1, "w3", lease=60) is Claim.BUSY
    store.release(job, 1, "w2")
    assert store.claim(job, 1, "w3", lease=60) is Claim.CLAIMED


def test_claim_many_answers_in_order(state: RedisWorkerState, job: str) -> None:
    store = state.dedup
    store.claim(job, 1, "other", lease=60)
    store.claim(job, 2, "other", lease=60)
    store.finish(job, 2, ttl=60)
    assert store.claim_many([(job, 1), (job, 2), (job, 3)], "me", lease=60) == [
        Claim.BUSY, Claim.DONE, Claim.CLAIMED]
    assert store.claim_many([], "me", lease=60) == []


def test_two_racing_claimers_never_both_win(redis_server: RedisServer) -> None:
    states = [RedisWorkerState.from_url(redis_server.url) for _ in range(2)]
    prefix = uuid.uuid4().hex
    wins: list[str] = []
    barrier = threading.Barrier(2, timeout=5)

    def claim(index: int) -> None:
        barrier.wait()
        for n in range(200):
            if states[index].dedup.claim(f"{prefix}{n}", 1, f"w{index}", 60) is Claim.CLAIMED:
                wins.append(f"{prefix}{n}")

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    for state in states:
        state.close()
    assert sorted(wins) == sorted(f"{prefix}{n}" for n in range(200))


def test_checkpoints_round_trip_expire_and_clear(state: RedisWorkerState, job: str,
                                                 redis_server: RedisServer) -> None:
    checkpoints = state.checkpoints
    assert checkpoints.load(job) is None
    checkpoints.save(job, {"row": 10})
    checkpoints.save(job, {"row": 20})
    assert checkpoints.load(job) == {"row": 20}
    assert 0 < redis_server.client().ttl(f"queuebridge:checkpoint:{job}") <= 7 * 86_400
    checkpoints.clear(job)
    assert checkpoints.load(job) is None
    with pytest.raises(SerializationError, match=job):
        checkpoints.save(job, {"when": time})


def test_heartbeats_list_live_and_dead_workers_across_clients(private_redis: RedisServer
                                                              ) -> None:
    writer = RedisWorkerState.from_url(private_redis.url)
    reader = RedisWorkerState.from_url(private_redis.url)
    writer.heartbeats.beat(WorkerInfo("w1", "host-a", 1, ("b0",), ("default",), ("j1",),
                                      interval=5))
    writer.heartbeats.beat(WorkerInfo("w2", "host-b", 2, ("b0",), ("default",),
                                      interval=0.0001))
    workers = reader.heartbeats.workers()
    assert [w.name for w in workers] == ["w1", "w2"]
    assert workers[0].current_jobs == ("j1",) and workers[0].alive
    assert not workers[1].alive
    writer.heartbeats.remove("w2")
    assert [w.name for w in reader.heartbeats.workers()] == ["w1"]
    assert 0 < private_redis.client().ttl(RedisHeartbeats.KEY) <= 86_400
    writer.close()
    reader.close()


def test_silent_workers_are_forgotten(private_redis: RedisServer) -> None:
    state = RedisWorkerState.from_url(private_redis.url)
    beats = RedisHeartbeats(RedisStateClient(private_redis.url), kept=0)
    state.heartbeats.beat(WorkerInfo("gone", "host", 1, ("b0",), ("default",)))
    expire()
    assert beats.workers() == []
    assert private_redis.client().hlen(RedisHeartbeats.KEY) == 0
    beats.close()
    state.close()


def test_unreachable_redis_raises_store_unavailable(job: str) -> None:
    state = RedisWorkerState.from_url(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(StoreUnavailable):
        state.dedup.claim(job, 1, "w1", lease=60)
    with pytest.raises(StoreUnavailable):
        state.heartbeats.workers()
    with pytest.raises(StoreUnavailable):
        state.checkpoints.load(job)
    state.close()


def test_a_hung_redis_fails_within_the_url_timeout(private_redis: RedisServer, job: str) -> None:
    state = RedisWorkerState.from_url(f"{private_redis.url}?socket_timeout=0.3")
    state.dedup.claim(job, 1, "w1", lease=60)  # connected before the hang
    os.kill(private_redis.pid, signal.SIGSTOP)
    try:
        start = time.monotonic()
        with pytest.raises(StoreUnavailable):
            state.dedup.finish(job, 1, ttl=60)
        assert time.monotonic() - start < 2.0
    finally:
        os.kill(private_redis.pid, signal.SIGCONT)
        state.close()


def test_open_worker_state_finds_the_plugin_by_scheme(redis_server: RedisServer,
                                                      job: str) -> None:
    state = open_worker_state(redis_server.url, PluginManager())
    try:
        assert isinstance(state, RedisWorkerState)
        assert state.dedup.claim(job, 1, "w1", lease=60) is Claim.CLAIMED
        assert state.location == redis_server.url
    finally:
        state.close()


def test_the_location_and_errors_hide_the_password(job: str) -> None:
    state = open_worker_state(f"redis://:secret@127.0.0.1:{free_port()}/0", PluginManager())
    assert state.location.startswith("redis://:***@")
    with pytest.raises(StoreUnavailable) as info:
        state.dedup.claim(job, 1, "w1", lease=60)
    assert "secret" not in str(info.value)
    state.close()
