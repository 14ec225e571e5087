"""The durable spool: bounded, oldest-first, rows deleted only after the backend
confirmed, claims between drainers, and survival of a killed producer."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from queuebridge import Envelope
from queuebridge.errors import BackendUnavailable, JobRejected, QueueBridgeError, SpoolFull
from queuebridge.settings import RouterSettings, SpoolSettings
from queuebridge.spool import Spool
from tests.helpers import build_bridge, wait_until

FAST = RouterSettings(deadline=1.0, probe_interval=0.02, probe_max_interval=0.1,
                      probe_jitter=0.0, recovery_probes=2)


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    spool = Spool(tmp_path / "spool.db", max_jobs=100)
    yield spool
    spool.close()


def jobs(count: int) -> list[Envelope]:
    return [Envelope.create("tests.job", (n,), {"n": n}, headers={"h": "v"}) for n in range(count)]


def test_put_and_list_keep_the_envelope_unchanged(spool: Spool) -> None:
    envelopes = [*jobs(2), Envelope.create("tests.later", queue="slow", delay=60)]
    spool.put_many(envelopes)
    assert spool.count() == 3
    listed = spool.list(limit=10)
    assert [row.envelope for row in listed] == envelopes
    assert [row.seq for row in listed] == sorted(row.seq for row in listed)
    assert (listed[2].job_id, listed[2].queue, listed[2].task) == (
        envelopes[2].id, "slow", "tests.later")
    assert spool.list(limit=1)[0].job_id == envelopes[0].id


def test_the_file_is_durable_sqlite_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "spool.db"
    spool = Spool(path)
    try:
        assert spool._db is not None
        assert spool._db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
    finally:
        spool.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_full_spool_refuses_the_whole_batch(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", max_jobs=3)
    try:
        spool.put_many(jobs(2))
        with pytest.raises(SpoolFull, match="max_jobs=3"):
            spool.put_many(jobs(2))
        assert spool.count() == 2
        spool.put_many(jobs(1))
        assert spool.count() == 3
    finally:
        spool.close()


def test_drain_replays_oldest_first_in_batches(spool: Spool) -> None:
    envelopes = jobs(7)
    for envelope in envelopes:
        spool.put_many([envelope])
    batches: list[list[str]] = []
    progress: list[tuple[int, int]] = []
    drained = spool.drain(lambda batch: batches.append([e.id for e in batch]), batch=3,
                          progress=lambda done, total: progress.append((done, total)))
    assert drained == 7
    assert [len(batch) for batch in batches] == [3, 3, 1]
    assert [job_id for batch in batches for job_id in batch] == [e.id for e in envelopes]
    assert progress == [(3, 7), (6, 7), (7, 7)]
    assert spool.count() == 0


def test_rows_are_deleted_only_after_the_send_confirmed(spool: Spool) -> None:
    envelopes = jobs(7)
    spool.put_many(envelopes)
    sent: list[Envelope] = []

    def fail_on_second_batch(batch: Sequence[Envelope]) -> None:
        if sent:
            raise BackendUnavailable("connection refused", backend="primary")
        sent.extend(batch)

    with pytest.raises(BackendUnavailable):
        spool.drain(fail_on_second_batch, batch=3)
    assert spool.count() == 4
    remaining = spool.list()
    assert [row.job_id for row in remaining] == [e.id for e in envelopes[3:]]
    assert {row.claimed_by for row in remaining} == {None}  # the claim was released
    assert spool.drain(sent.extend, batch=3) == 4
    assert sent == envelopes


def test_a_job_every_backend_refuses_is_set_aside_and_the_rest_drain(spool: Spool) -> None:
    envelopes = jobs(5)
    poison = envelopes[1]
    spool.put_many(envelopes)
    sent: list[Envelope] = []
    attempts: list[str] = []

    def refuse_poison(batch: Sequence[Envelope]) -> None:
        attempts.extend(e.id for e in batch if e.id == poison.id)
        if any(e.id == poison.id for e in batch):
            raise JobRejected("every live backend refused the batch: message too large")
        sent.extend(batch)

    assert spool.drain(refuse_poison, batch=3) == 4
    assert sent == [e for e in envelopes if e.id != poison.id]  # order kept, nothing lost
    [kept] = spool.list()
    assert (kept.job_id, kept.claimed_by) == (poison.id, "rejected")
    tried = len(attempts)
    assert spool.drain(refuse_poison, batch=3) == 0
    assert len(attempts) == tried, "a set-aside job was tried again"


def test_two_drainers_never_send_the_same_row(tmp_path: Path) -> None:
    first, second = Spool(tmp_path / "spool.db"), Spool(tmp_path / "spool.db")
    try:
        envelopes = jobs(6)
        first.put_many(envelopes)
        sent: list[str] = []

        def send_first(batch: Sequence[Envelope]) -> None:
            # While this batch is in flight, the other drainer runs over the same file.
            second.drain(lambda other: sent.extend(e.id for e in other), batch=10)
            sent.extend(e.id for e in batch)

        first.drain(send_first, batch=2)
        assert sorted(sent) == sorted(e.id for e in envelopes)  # each row exactly once
        assert first.count() == 0
    finally:
        first.close()
        second.close()


def test_a_dead_drainers_claim_expires(tmp_path: Path) -> None:
    crashed = Spool(tmp_path / "spool.db")
    crashed.put_many(jobs(3))
    assert len(crashed._claim(10)) == 3  # claimed, then the process "dies"
    crashed.close()
    patient, impatient = Spool(tmp_path / "spool.db"), Spool(tmp_path / "spool.db", claim_ttl=0)
    try:
        assert patient.drain(lambda batch: None) == 0
        assert impatient.drain(lambda batch: None) == 3
        assert patient.count() == 0
    finally:
        patient.close()
        impatient.close()


def test_a_closed_spool_raises(spool: Spool) -> None:
    spool.close()
    with pytest.raises(QueueBridgeError, match="closed"):
        spool.count()


def test_router_spools_when_all_down_and_drains_after_heal(tmp_path: Path) -> None:
    spool = SpoolSettings(path=tmp_path / "spool.db", drain_batch=2)
    bridge, (primary, alternate), recorder = build_bridge(router=FAST, spool=spool)
    try:
        primary.break_()
        alternate.break_()
        envelopes = jobs(5)
        assert [bridge.submit([e])[0].backend for e in envelopes] == ["spool"] * 5
        assert bridge.router.flush_events()
        assert recorder.of("failover")[-1].to_backend == "spool"  # type: ignore[attr-defined]
        assert bridge.router.spool is not None and bridge.router.spool.count() == 5
        primary.heal()
        wait_until(lambda: primary.depth("default") == 5, timeout=5)
        wait_until(lambda: bridge.router.spool.count() == 0, timeout=5)  # type: ignore[union-attr]
        replayed = [primary.reserve(["default"], timeout=1) for _ in envelopes]
        assert [d.envelope for d in replayed if d is not None] == envelopes
        assert recorder.enqueued == [(e.id, "spool") for e in envelopes] + [
            (e.id, "primary") for e in envelopes]
    finally:
        bridge.close()


def test_router_raises_spool_full(tmp_path: Path) -> None:
    spool = SpoolSettings(path=tmp_path / "spool.db", max_jobs=2)
    bridge, backends, _ = build_bridge(router=FAST, spool=spool)
    try:
        for backend in backends:
            backend.break_()
        bridge.submit(jobs(2))
        with pytest.raises(SpoolFull):
            bridge.submit(jobs(1))
    finally:
        bridge.close()


PRODUCER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from queuebridge import Envelope
    from queuebridge.settings import RouterSettings, SpoolSettings
    from tests.helpers import build_bridge

    path, out = Path(sys.argv[1]), Path(sys.argv[2])
    bridge, backends, _ = build_bridge(
        router=RouterSettings(probe_interval=60.0), spool=SpoolSettings(path=path))
    for backend in backends:
        backend.break_()
    ids = []
    for n in range(20):
        [ref] = bridge.submit([Envelope.create("tests.job", (n,))])
        assert ref.backend == "spool", ref
        ids.append(ref.id)
    out.with_suffix(".tmp").write_text("\\n".join(ids))
    out.with_suffix(".tmp").rename(out)  # whole, or not at all
    time.sleep(60)  # killed long before
""")


def test_the_spool_survives_a_killed_producer(tmp_path: Path) -> None:
    path, out = tmp_path / "spool.db", tmp_path / "ids.txt"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    producer = subprocess.Popen([sys.executable, "-c", PRODUCER, str(path), str(out)], env=env)
    try:
        wait_until(lambda: out.exists() or producer.poll() is not None, timeout=20)
        producer.send_signal(signal.SIGKILL)
    finally:
        producer.kill()
        producer.wait(timeout=10)
    ids = out.read_text().split("\n")
    assert len(ids) == 20

    bridge, (primary, _), _ = build_bridge(router=FAST, spool=SpoolSettings(path=path))
    try:
        wait_until(lambda: primary.depth("default") == 20, timeout=10)
        replayed = [primary.reserve(["default"], timeout=1) for _ in ids]
        assert [d.job_id for d in replayed if d is not None] == ids
        wait_until(lambda: bridge.router.spool.count() == 0, timeout=5)  # type: ignore[union-attr]
    finally:
        bridge.close()
