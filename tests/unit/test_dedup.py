"""The SQLite dedup store, checkpoints and heartbeats on their own."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from queuebridge import heartbeat
from queuebridge.checkpoint import SQLiteCheckpoints
from queuebridge.dedup import Claim, SQLiteDedupStore, StoreUnavailable
from queuebridge.errors import SerializationError
from queuebridge.heartbeat import SQLiteHeartbeats, WorkerInfo, list_workers


@pytest.fixture
def store(tmp_path: Path) -> SQLiteDedupStore:
    return SQLiteDedupStore(tmp_path / "state.sqlite3")


def test_claim_then_done_then_duplicate(store: SQLiteDedupStore) -> None:
    assert store.claim("j1", 1, "w1", lease=60) is Claim.CLAIMED
    assert store.claim("j1", 1, "w2", lease=60) is Claim.BUSY
    store.finish("j1", 1, ttl=60)
    assert store.claim("j1", 1, "w2", lease=60) is Claim.DONE
    # A retry is a new attempt of the same id: a new claim.
    assert store.claim("j1", 2, "w2", lease=60) is Claim.CLAIMED


def test_expired_claim_of_a_dead_owner_is_taken_over(store: SQLiteDedupStore) -> None:
    assert store.claim("j1", 1, "dead", lease=0.0) is Claim.CLAIMED
    assert store.claim("j1", 1, "alive", lease=60) is Claim.CLAIMED
    store.finish("j1", 1, ttl=0.0)
    assert store.claim("j1", 1, "later", lease=60) is Claim.CLAIMED  # done TTL passed


def test_renew_and_release_only_touch_the_owner(store: SQLiteDedupStore) -> None:
    assert store.claim("j1", 1, "w1", lease=0.0) is Claim.CLAIMED
    store.renew([("j1", 1)], "w2", lease=60)
    assert store.claim("j1", 1, "w2", lease=0.0) is Claim.CLAIMED  # not renewed: expired
    store.renew([("j1", 1)], "w2", lease=60)
    store.release("j1", 1, "w1")
    assert store.claim("j1", 1, "w3", lease=60) is Claim.BUSY
    store.release("j1", 1, "w2")
    assert store.claim("j1", 1, "w3", lease=60) is Claim.CLAIMED


def test_two_racing_claimers_never_both_win(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    stores = [SQLiteDedupStore(path), SQLiteDedupStore(path)]
    wins: list[str] = []
    barrier = threading.Barrier(2, timeout=5)

    def claim(index: int) -> None:
        barrier.wait()
        for n in range(200):
            if stores[index].claim(f"job{n}", 1, f"w{index}", lease=60) is Claim.CLAIMED:
                wins.append(f"job{n}")

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(wins) == sorted(f"job{n}" for n in range(200))


def test_unreachable_store_raises_store_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = SQLiteDedupStore(blocker / "state.sqlite3")
    with pytest.raises(StoreUnavailable):
        store.claim("j1", 1, "w1", lease=60)


def test_checkpoints_round_trip_and_clear(tmp_path: Path) -> None:
    checkpoints = SQLiteCheckpoints(tmp_path / "state.sqlite3")
    assert checkpoints.load("j1") is None
    checkpoints.save("j1", {"row": 10})
    checkpoints.save("j1", {"row": 20})
    assert checkpoints.load("j1") == {"row": 20}
    checkpoints.clear("j1")
    assert checkpoints.load("j1") is None
    with pytest.raises(SerializationError, match="j1"):
        checkpoints.save("j1", {"when": time})


def test_heartbeats_list_live_and_dead_workers(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state.sqlite3"
    beats = SQLiteHeartbeats(path)
    beats.beat(WorkerInfo("w1", "host", 1, ("b0",), ("default",), ("j1",), interval=5))
    beats.beat(WorkerInfo("w2", "host", 2, ("b0",), ("default",), interval=0.0001))
    workers = list_workers(path)
    # Judge liveness one second later: w2 (0.1 ms interval) is long dead, w1 is not.
    later = time.time() + 1.0
    monkeypatch.setattr(heartbeat, "time", SimpleNamespace(time=lambda: later))
    assert [w.name for w in workers] == ["w1", "w2"]
    assert workers[0].current_jobs == ("j1",) and workers[0].alive
    assert not workers[1].alive
    assert beats.prune(older_than=-1) == 2


def test_a_buffered_finish_is_never_seen_as_done_before_it_is_written(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    mine, other = SQLiteDedupStore(path), SQLiteDedupStore(path)
    assert mine.claim_many([("j1", 1), ("j2", 1)], "w1", lease=60) == [Claim.CLAIMED] * 2
    mine.finish("j1", 1, ttl=60)
    assert mine.claim("j1", 1, "w1", lease=60) is Claim.DONE  # this store knows at once
    assert other.claim("j2", 1, "w2", lease=60) is Claim.BUSY
    mine.finish("j2", 1, ttl=60)
    assert other.claim("j2", 1, "w2", lease=60) is Claim.BUSY  # running, not skipped
    mine.flush()
    assert other.claim("j2", 1, "w2", lease=60) is Claim.DONE
    mine.close()
    other.close()
