"""The health-aware router: failover in the same call, circuit breaking, hysteresis,
the enqueue deadline, and one event per transition."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from queuebridge import Bridge, Envelope
from queuebridge.backend import BackendSettings
from queuebridge.backends.memory import MemoryBackend
from queuebridge.errors import BackendError, DeadlineExceeded, EnqueueError, NoBackendAvailable
from queuebridge.settings import RouterSettings, SpoolSettings
from tests.helpers import Recorder, build_bridge, wait_until

FAST = RouterSettings(deadline=1.0, probe_interval=0.02, probe_max_interval=0.1,
                      probe_jitter=0.0, recovery_probes=3)
EPSILON = 0.25
"""Scheduling slack allowed on top of a deadline on a busy 2-core machine."""

MakeBridge = Callable[..., tuple[Bridge, list[MemoryBackend], Recorder]]


class RefusingBackend(MemoryBackend):
    """Answers every send with a refusal: not an outage."""

    def _send_many(self, envelopes: Sequence[Envelope]) -> None:
        raise BackendError("OOM command not allowed when used memory > 'maxmemory'",
                           backend=self.name)


def test_a_job_every_backend_refuses_is_not_spooled(tmp_path: Path) -> None:
    from queuebridge.errors import JobRejected

    backends = [RefusingBackend(BackendSettings(name=n, type="memory")) for n in ("a", "b")]
    bridge = Bridge(backends, spool=SpoolSettings(path=tmp_path / "spool.db"))
    try:
        with pytest.raises(JobRejected, match=r"every backend refused the job.*maxmemory"):
            bridge.submit([job()])
        assert bridge.router.spool is None or bridge.router.spool.count() == 0
    finally:
        bridge.close()


class RejectingBackend(MemoryBackend):
    """Answers, but refuses the next ``rejections`` sends with a plain BackendError."""

    rejections = 0

    def _send_many(self, envelopes: Sequence[Envelope]) -> None:
        if self.rejections > 0:
            self.rejections -= 1
            raise BackendError("rejected by redis://app:s3cret@db:6379", backend=self.name)
        super()._send_many(envelopes)


@pytest.fixture
def make_bridge() -> Iterator[MakeBridge]:
    built: list[Bridge] = []

    def make(*args: Any, **kwargs: Any) -> tuple[Bridge, list[MemoryBackend], Recorder]:
        kwargs.setdefault("router", FAST)
        made = build_bridge(*args, **kwargs)
        built.append(made[0])
        return made

    yield make
    for bridge in built:
        bridge.close()


def job(n: int = 0) -> Envelope:
    return Envelope.create("tests.job", (n,))


def test_healthy_primary_takes_every_job(make_bridge: MakeBridge) -> None:
    bridge, (primary, alternate), recorder = make_bridge()
    refs = bridge.submit([job(1), job(2)])
    assert [ref.backend for ref in refs] == ["primary", "primary"]
    assert primary.depth("default") == 2
    assert alternate.calls == 0
    assert bridge.router.preferred == "primary"
    assert bridge.router.flush_events()
    assert recorder.events == []
    assert [h.up for h in bridge.router.health()] == [True, True]


def test_failover_happens_within_the_same_call(make_bridge: MakeBridge) -> None:
    bridge, (primary, alternate), recorder = make_bridge()
    primary.break_()
    envelope = job()
    [ref] = bridge.submit([envelope])
    assert ref.backend == "alternate"
    assert alternate.depth("default") == 1
    assert bridge.router.flush_events()
    assert recorder.kinds() == ["backend_down", "failover"]
    [failover] = recorder.of("failover")
    assert (failover.from_backend, failover.to_backend) == ("primary", "alternate")  # type: ignore[attr-defined]
    assert "connection refused" in failover.reason  # type: ignore[attr-defined]
    assert bridge.router.preferred == "alternate"
    down = bridge.router.health()[0]
    assert (down.up, down.down_count, down.consecutive_failures) == (False, 1, 1)
    assert "connection refused" in down.to_dict()["last_error"]


def test_no_exception_while_any_backend_is_up(make_bridge: MakeBridge) -> None:
    bridge, (first, second, _third), _ = make_bridge(("first", "second", "third"))
    first.break_()
    assert bridge.submit([job()])[0].backend == "second"
    second.break_()
    assert bridge.submit([job()])[0].backend == "third"
    assert bridge.router.preferred == "third"


def test_a_batch_goes_whole_to_one_backend_with_the_same_ids(make_bridge: MakeBridge) -> None:
    bridge, (primary, alternate), _ = make_bridge()
    primary.break_()
    batch = [job(n) for n in range(10)]
    refs = bridge.submit(batch)
    assert {ref.backend for ref in refs} == {"alternate"}
    assert [ref.id for ref in refs] == [envelope.id for envelope in batch]
    assert alternate.depth("default") == 10


def test_a_dead_backend_is_not_tried_per_job(make_bridge: MakeBridge) -> None:
    slow_probes = RouterSettings(deadline=1.0, probe_interval=30.0, probe_max_interval=30.0)
    bridge, (primary, _), _ = make_bridge(router=slow_probes)
    primary.break_()
    bridge.submit([job()])
    calls = primary.calls
    for n in range(200):
        assert bridge.submit([job(n)])[0].backend == "alternate"
    assert primary.calls == calls


def test_one_event_per_transition_with_many_threads(make_bridge: MakeBridge) -> None:
    bridge, (primary, alternate), recorder = make_bridge()
    stop = threading.Event()
    errors: list[BaseException] = []
    counts: list[int] = []

    def produce() -> None:
        n = 0
        try:
            while not stop.is_set():
                bridge.submit([job(n)])
                n += 1
        except BaseException as exc:
            errors.append(exc)
        counts.append(n)

    workers = [threading.Thread(target=produce) for _ in range(8)]
    for worker in workers:
        worker.start()
    wait_until(lambda: len(recorder.enqueued) >= 100)
    primary.break_()  # mid-stream, then keep the threads going for a while
    sent_before_break = len(recorder.enqueued)
    wait_until(lambda: len(recorder.enqueued) >= sent_before_break + 400)
    stop.set()
    for worker in workers:
        worker.join(timeout=10)
    assert errors == []
    total = sum(counts)
    assert bridge.router.flush_events()
    assert len(recorder.enqueued) == total
    assert recorder.kinds() == ["backend_down", "failover"]

    primary.heal()
    assert primary.depth("default") + alternate.depth("default") == total
    assert alternate.depth("default") >= 400 - 8  # at most one job in flight per thread
    wait_until(lambda: bridge.router.preferred == "primary", timeout=5)
    assert bridge.router.flush_events()
    assert recorder.kinds() == ["backend_down", "failover", "backend_up", "failback"]


def test_failback_needs_the_configured_number_of_good_probes(make_bridge: MakeBridge) -> None:
    slow = RouterSettings(deadline=1.0, probe_interval=0.15, probe_max_interval=0.3,
                          probe_jitter=0.0, recovery_probes=3)
    bridge, (primary, _), recorder = make_bridge(router=slow)
    primary.break_()
    bridge.submit([job()])

    def primary_health() -> tuple[int, int]:
        record = bridge.router.health()[0]
        return record.consecutive_successes, record.consecutive_failures

    primary.heal()
    wait_until(lambda: primary_health()[0] == 1, timeout=5)
    primary.break_()  # one good probe, then down again: must not flap up
    wait_until(lambda: primary_health() == (0, 1), timeout=5)
    assert bridge.router.flush_events()
    assert recorder.kinds() == ["backend_down", "failover"]
    assert bridge.router.preferred == "alternate"

    primary.heal()
    healed = time.monotonic()
    wait_until(lambda: bridge.router.preferred == "primary", timeout=5)
    # Three probes at least 0.15 s apart: the first one, then two confirmations.
    assert time.monotonic() - healed >= 2 * 0.15
    assert bridge.router.flush_events()
    assert recorder.kinds() == ["backend_down", "failover", "backend_up", "failback"]
    assert recorder.of("backend_up")[0].downtime > 0  # type: ignore[attr-defined]
    assert bridge.submit([job()])[0].backend == "primary"


def test_a_hung_backend_within_the_deadline_fails_over_in_the_same_call(
        make_bridge: MakeBridge) -> None:
    bridge, (primary, _), _ = make_bridge(timeout=0.3)
    primary.hang()
    start = time.monotonic()
    assert bridge.submit([job()])[0].backend == "alternate"
    assert time.monotonic() - start < 0.3 + EPSILON
    start = time.monotonic()
    assert bridge.submit([job()])[0].backend == "alternate"
    assert time.monotonic() - start < 0.1  # the circuit is open: no second wait


def test_the_deadline_holds_when_a_backend_hangs_longer(make_bridge: MakeBridge) -> None:
    router = RouterSettings(deadline=0.4, probe_interval=30.0)
    bridge, (primary, _), _ = make_bridge(timeout=3.0, router=router)
    primary.hang()
    start = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        bridge.submit([job()])
    assert time.monotonic() - start < 0.4 + EPSILON
    assert bridge.router.preferred == "alternate"
    primary.heal()  # releases the abandoned helper thread


def test_the_spool_is_preferred_to_a_deadline_error(make_bridge: MakeBridge,
                                                    tmp_path: Path) -> None:
    router = RouterSettings(deadline=0.4, probe_interval=30.0)
    spool = SpoolSettings(path=tmp_path / "spool.db")
    bridge, (primary, _), _ = make_bridge(timeout=3.0, router=router, spool=spool)
    primary.hang()
    start = time.monotonic()
    assert bridge.submit([job()])[0].backend == "spool"
    assert time.monotonic() - start < 0.4 + EPSILON
    primary.heal()


def test_everything_down_without_a_spool_raises(make_bridge: MakeBridge) -> None:
    bridge, (primary, alternate), recorder = make_bridge()
    primary.break_()
    alternate.break_()
    with pytest.raises(NoBackendAvailable, match="connection refused"):
        bridge.submit([job()])
    calls = primary.calls + alternate.calls
    with pytest.raises(NoBackendAvailable):
        bridge.submit([job()])
    assert primary.calls + alternate.calls == calls
    assert bridge.router.preferred == "none"
    assert bridge.router.flush_events()
    assert recorder.kinds() == ["backend_down", "failover", "backend_down", "failover"]
    assert recorder.of("failover")[1].to_backend == "none"  # type: ignore[attr-defined]


def test_other_errors_fail_over_but_open_the_circuit_only_at_the_threshold(
        make_bridge: MakeBridge) -> None:
    bridge, (primary, _), recorder = make_bridge(backend_class=RejectingBackend)
    assert isinstance(primary, RejectingBackend)
    primary.rejections = 2
    assert bridge.submit([job()])[0].backend == "alternate"
    assert bridge.submit([job()])[0].backend == "alternate"
    assert bridge.router.flush_events()
    assert recorder.events == []  # two answered-but-refused sends: still trusted
    assert bridge.submit([job()])[0].backend == "primary"
    assert bridge.router.health()[0].consecutive_failures == 0

    primary.rejections = FAST.error_threshold
    for _ in range(FAST.error_threshold):
        assert bridge.submit([job()])[0].backend == "alternate"
    assert bridge.router.flush_events()
    assert recorder.kinds() == ["backend_down", "failover"]
    last_error = bridge.router.health()[0].last_error
    assert "s3cret" not in last_error and "***" in last_error


def test_a_closed_router_refuses_jobs(make_bridge: MakeBridge) -> None:
    bridge, _, _ = make_bridge()
    bridge.close()
    with pytest.raises(EnqueueError, match="closed"):
        bridge.submit([job()])
