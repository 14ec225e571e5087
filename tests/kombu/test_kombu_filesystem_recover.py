"""Filesystem ``recover`` beside things that are not queues."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from queuebridge_kombu.filesystem import FilesystemBackend

from queuebridge.envelope import Envelope
from tests.kombu.test_kombu_filesystem_contract import filesystem_backend


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[FilesystemBackend]:
    built = filesystem_backend(tmp_path / "broker", lease_timeout=30)
    assert isinstance(built, FilesystemBackend)
    yield built
    built.close()


def test_recover_skips_entries_that_are_not_queues(backend: FilesystemBackend) -> None:
    backend.send(Envelope.create("t", queue="jobs"))
    delivery = backend.reserve(["jobs"], timeout=1)  # its worker "dies" holding it
    assert delivery is not None
    queues = backend.root / "queues"
    (queues / ".trash").mkdir()
    (queues / "lost+found").mkdir()
    (queues / ("x" * 65)).mkdir()
    (queues / "notes.txt").write_text("not a queue")
    (queues / "backup").mkdir()  # a valid name, but no queue folders inside
    stale = time.time() - 60
    os.utime(str(delivery.receipt), (stale, stale))

    assert backend.recover() == 1
    again = backend.reserve(["jobs"], timeout=1)
    assert again is not None and again.job_id == delivery.job_id
    backend.ack(again)
    assert sorted(os.listdir(queues / "backup")) == [], "recover created folders in it"
