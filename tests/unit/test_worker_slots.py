"""Pool slots are shared fairly between backends, through outages too."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from _worker_helpers import lease_expiries, memory, memory_bridge, running

from queuebridge.backend import BackendSettings
from queuebridge.backends.memory import MemoryBackend
from queuebridge.bridge import Bridge
from queuebridge.worker.tracking import Slots
from tests.helpers import wait_until


@pytest.fixture
def bridge() -> Iterator[Bridge]:
    bridge = memory_bridge(2)
    yield bridge
    bridge.close()


def _acquire_in_thread(slots: Slots, got: list[int]) -> threading.Thread:
    thread = threading.Thread(target=lambda: got.append(slots.acquire(1, 5.0)), daemon=True)
    thread.start()
    wait_until(lambda: slots.waiting == 1, message="the thread queues for a slot")
    return thread


def test_slots_go_to_the_first_in_line() -> None:
    slots = Slots(1)
    assert slots.acquire(1, 0.0) == 1
    got: list[int] = []
    waiter = _acquire_in_thread(slots, got)

    slots.release(1)
    # Giving a slot back and asking again at once must not jump the queue.
    assert slots.acquire(1, 0.0) == 0

    waiter.join(5.0)
    assert got == [1]
    assert slots.waiting == 0


def test_close_ends_every_wait() -> None:
    slots = Slots(1)
    assert slots.acquire(1, 0.0) == 1
    got: list[int] = []
    waiter = _acquire_in_thread(slots, got)

    slots.close()

    waiter.join(5.0)
    assert got == [0]
    slots.release(1)
    assert slots.acquire(1, 0.0) == 0


@pytest.mark.parametrize(("concurrency", "busy"), [(1, 0), (2, 1)])
def test_one_free_slot_serves_both_backends_promptly(
        bridge: Bridge, concurrency: int, busy: int) -> None:
    poll = 0.5
    release = threading.Event()
    started: list[str] = []

    @bridge.task(name="t.hold")
    def hold(tag: str) -> None:
        started.append(tag)
        release.wait(10)

    @bridge.task(name="t.quick")
    def quick(tag: str) -> None:
        started.append(tag)

    b0, b1 = memory(bridge, "b0"), memory(bridge, "b1")
    b0.send_many([hold.job((f"busy{i}",)) for i in range(busy)])
    with running(bridge, concurrency=concurrency, poll_timeout=poll):
        wait_until(lambda: len(started) == busy)
        try:
            # Whichever consumer holds the free slot, a job on either backend runs
            # within about two polls.
            for backend, tag in ((b1, "on-b1"), (b0, "on-b0"), (b1, "again-b1")):
                backend.send(quick.job((tag,)))
                wait_until(lambda tag=tag: tag in started, timeout=2.5 * poll,
                           message=f"{tag} did not run within ~2 polls")
        finally:
            release.set()


def test_a_dead_backend_gives_its_slot_back_before_backing_off(bridge: Bridge) -> None:
    ran: list[int] = []

    @bridge.task(name="t.n")
    def n(i: int) -> None:
        ran.append(i)

    b0, b1 = memory(bridge, "b0"), memory(bridge, "b1")
    b0.break_()
    with running(bridge, concurrency=1, reconnect_backoff=5.0, reconnect_backoff_max=5.0):
        wait_until(lambda: b0.calls >= 1, message="b0's consumer found it down")
        b1.send_many([n.job((i,)) for i in range(5)])
        # The dead broker's consumer backs off ~5 s: it must not hold the only slot.
        wait_until(lambda: len(ran) == 5, timeout=2.0)
    assert sorted(ran) == [0, 1, 2, 3, 4]


def test_leases_stay_renewed_after_an_outage_while_the_pool_is_full() -> None:
    short = MemoryBackend(BackendSettings("b0", "memory", timeout=0.2, lease_timeout=0.6))
    other = MemoryBackend(BackendSettings("b1", "memory", timeout=0.2))
    bridge = Bridge([short, other])
    release = threading.Event()
    runs: list[str] = []

    @bridge.task(name="t.hold")
    def hold(tag: str) -> None:
        runs.append(tag)
        release.wait(10)

    try:
        short.send(hold.job(("A",)))
        with running(bridge, concurrency=2) as handle:
            try:
                wait_until(lambda: runs == ["A"])
                calls = short.calls
                short.break_()
                wait_until(lambda: short.calls > calls + 2, message="b0 seen down")
                other.send(hold.job(("B",)))  # takes the last slot
                wait_until(lambda: sorted(runs) == ["A", "B"])
                short.heal()
                healed = time.monotonic()
                # The pool is full, so b0's consumer cannot reserve: it must still
                # notice b0 is back and renew A's lease, or A is recovered and run twice.
                wait_until(lambda: min(lease_expiries(short), default=0.0) > healed + 0.6,
                           timeout=3.0, message="A's lease was not renewed after b0 came back")
            finally:
                release.set()
            wait_until(lambda: handle.worker.stats.succeeded == 2)
        assert sorted(runs) == ["A", "B"]
    finally:
        bridge.close()
