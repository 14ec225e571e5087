"""Filesystem batch leasing: one listing serves many batches, queue and due order,
exclusive claims between threads and instances sharing a folder."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from queuebridge_kombu import fsqueue

from queuebridge.backend import Backend
from queuebridge.envelope import Envelope
from tests.kombu.test_kombu_filesystem_contract import filesystem_backend


@pytest.fixture
def backends(tmp_path: Path) -> Iterator[list[Backend]]:
    built = [filesystem_backend(tmp_path / "broker") for _ in range(2)]
    yield built
    for backend in built:
        backend.close()


def _jobs(queue: str, count: int) -> list[Envelope]:
    return [Envelope.create("t", (i,), queue=queue) for i in range(count)]


def test_one_listing_serves_many_batches(backends: list[Backend],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    backend = backends[0]
    sent = _jobs("q", 40)
    backend.send_many(sent)
    scans: list[Any] = []
    real_scandir = os.scandir

    def counting_scandir(path: Any) -> Any:
        scans.append(path)
        return real_scandir(path)

    monkeypatch.setattr(fsqueue.os, "scandir", counting_scandir)
    batches = [backend.reserve_many(["q"], 16, timeout=0) for _ in range(3)]
    assert [len(batch) for batch in batches] == [16, 16, 8]
    assert len(scans) == 1
    leased = [d for batch in batches for d in batch]
    assert sorted(d.job_id for d in leased) == sorted(env.id for env in sent)
    names = [os.path.basename(d.receipt) for d in leased]
    assert names == sorted(names), "not in due order"
    for delivery in leased:
        backend.ack(delivery)


def test_a_batch_follows_the_queue_order(backends: list[Backend]) -> None:
    backend = backends[0]
    backend.send_many(_jobs("low", 10) + _jobs("high", 3))
    batch = backend.reserve_many(["high", "low"], 5, timeout=0)
    assert [d.queue for d in batch] == ["high"] * 3 + ["low"] * 2


def test_delayed_files_are_not_in_a_batch(backends: list[Backend]) -> None:
    backend = backends[0]
    backend.send_many([Envelope.create("t", queue="q", delay=60), *_jobs("q", 2)])
    assert len(backend.reserve_many(["q"], 10, timeout=0)) == 2
    assert backend.reserve_many(["q"], 10, timeout=0.05) == []
    assert backend.depth("q") == 1


def test_threads_of_two_instances_never_share_a_job(backends: list[Backend]) -> None:
    sent = _jobs("q", 300)
    backends[0].send_many(sent)
    seen: list[str] = []
    lock = threading.Lock()

    def consume(backend: Backend) -> None:
        while batch := backend.reserve_many(["q"], 8, timeout=0.1):
            with lock:
                seen.extend(d.job_id for d in batch)
            for delivery in batch:
                backend.ack(delivery)

    threads = [threading.Thread(target=consume, args=(backend,))
               for backend in backends for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert sorted(seen) == sorted(env.id for env in sent)
