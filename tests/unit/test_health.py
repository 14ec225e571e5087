"""The health board's state machine, driven directly (no threads, no clocks to wait on)."""

from __future__ import annotations

import threading
import time

import pytest

from queuebridge.events import TransitionEvent
from queuebridge.health import HealthBoard, Monitor
from queuebridge.settings import RouterSettings

SETTINGS = RouterSettings(probe_interval=1.0, probe_max_interval=4.0, probe_jitter=0.0,
                          recovery_probes=3)


def make_board(names: tuple[str, ...] = ("primary", "alternate"),
               settings: RouterSettings = SETTINGS, fallback: str = "spool"
               ) -> tuple[HealthBoard, list[TransitionEvent]]:
    events: list[TransitionEvent] = []
    return HealthBoard(names, settings, events.append, fallback=fallback), events


def kinds(events: list[TransitionEvent]) -> list[str]:
    return [event.kind for event in events]


def test_a_backend_comes_back_only_after_k_consecutive_good_probes() -> None:
    board, events = make_board()
    board.send_failed("primary", "refused", unavailable=True)
    board.probe_ok("primary", 0.001)
    board.probe_ok("primary", 0.001)
    board.probe_failed("primary", "refused again")  # resets the count
    assert board.probe_ok("primary", 0.001) is False
    assert board.probe_ok("primary", 0.001) is False
    assert not board.is_up("primary")
    assert kinds(events) == ["backend_down", "failover"]
    assert board.probe_ok("primary", 0.001) is True
    assert board.preferred == "primary"
    assert kinds(events) == ["backend_down", "failover", "backend_up", "failback"]


def test_probe_delays_double_up_to_the_cap() -> None:
    board, _ = make_board()
    board.send_failed("primary", "refused", unavailable=True)
    delays = []
    for _ in range(4):
        delays.append(board.next_probe_in())
        board.probe_failed("primary", "refused")
    assert delays == pytest.approx([1.0, 2.0, 4.0, 4.0], abs=0.05)
    board.probe_ok("primary", 0.001)  # confirmation probes come at the base interval
    assert board.next_probe_in() == pytest.approx(1.0, abs=0.05)


def test_jitter_only_lengthens_the_delay() -> None:
    board, _ = make_board(settings=RouterSettings(probe_interval=1.0, probe_jitter=0.5))
    board.send_failed("primary", "refused", unavailable=True)
    delay = board.next_probe_in()
    assert delay is not None and 0.95 <= delay <= 1.5


def test_failover_and_failback_follow_the_preferred_backend() -> None:
    board, events = make_board(("a", "b", "c"))
    board.send_failed("b", "x", unavailable=True)  # not preferred: no failover
    assert kinds(events) == ["backend_down"]
    board.send_failed("a", "x", unavailable=True)
    board.send_failed("c", "x", unavailable=True)
    assert board.preferred == "spool"
    failovers = [(e.from_backend, e.to_backend) for e in events if e.kind == "failover"]  # type: ignore[attr-defined]
    assert failovers == [("a", "c"), ("c", "spool")]
    for _ in range(3):
        board.probe_ok("b", 0.0)
    assert board.preferred == "b"
    assert [(e.from_backend, e.to_backend) for e in events if e.kind == "failback"] == [  # type: ignore[attr-defined]
        ("spool", "b")]


def test_the_failure_threshold_delays_the_circuit() -> None:
    board, events = make_board(settings=RouterSettings(failure_threshold=2))
    board.send_failed("primary", "refused", unavailable=True)
    board.send_ok("primary", 0.001)  # a success in between resets the count
    board.send_failed("primary", "refused", unavailable=True)
    assert board.is_up("primary") and events == []
    board.send_failed("primary", "refused", unavailable=True)
    assert not board.is_up("primary")


def test_a_transition_is_emitted_once_however_many_threads_see_it() -> None:
    board, events = make_board()
    barrier = threading.Barrier(16)

    def fail() -> None:
        barrier.wait(timeout=5)
        board.send_failed("primary", "refused", unavailable=True)

    threads = [threading.Thread(target=fail) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    assert kinds(events) == ["backend_down", "failover"]
    [primary, _] = board.snapshot()
    assert (primary.down_count, primary.consecutive_failures) == (1, 16)


def test_snapshot_is_json_ready_and_redacted() -> None:
    board, _ = make_board()
    board.send_failed("primary", "refused at amqp://guest:hunter2@mq:5672//", unavailable=True)
    record = board.snapshot()[0].to_dict()
    assert set(record) == {"name", "up", "since", "latency", "consecutive_failures",
                           "consecutive_successes", "last_error", "down_count"}
    assert "hunter2" not in record["last_error"]


def test_the_monitor_stops_promptly() -> None:
    board, _ = make_board()
    monitor = Monitor(board, lambda name: 0.0, lambda: None)
    start = time.monotonic()
    monitor.stop(timeout=2)
    assert time.monotonic() - start < 0.5
