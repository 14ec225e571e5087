"""Return values are kept where a backend keeps results, readable by job id."""

from __future__ import annotations

import logging

import pytest

from queuebridge.bridge import Bridge
from tests.unit._worker_helpers import burst, memory, memory_bridge


@pytest.fixture
def bridge() -> Bridge:
    return memory_bridge(1)


def test_return_value_is_readable_by_job_id(bridge: Bridge) -> None:
    @bridge.task(name="t.add")
    def add(a: int, b: int) -> dict[str, int]:
        return {"sum": a + b}

    ref = add.enqueue(2, 3)
    assert bridge.job_status(ref) is None
    burst(bridge)
    assert bridge.job_result(ref) == {"sum": 5}
    assert bridge.job_result(ref.id) == {"sum": 5}
    assert bridge.job_status(ref) == "finished"


def test_unserialisable_result_is_logged_and_the_job_still_succeeds(
    bridge: Bridge, caplog: pytest.LogCaptureFixture
) -> None:
    @bridge.task(name="t.odd")
    def odd() -> object:
        return object()

    ref = odd.enqueue()
    with caplog.at_level(logging.WARNING, logger="queuebridge.worker"):
        worker = burst(bridge)
    assert worker.stats.succeeded == 1
    assert bridge.job_result(ref) is None
    assert memory(bridge, "b0").depth("default") == 0
    assert any(ref.id in r.getMessage() and "not JSON" in r.getMessage()
               for r in caplog.records)
