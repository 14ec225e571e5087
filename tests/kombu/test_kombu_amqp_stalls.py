"""A broker that stalls mid-frame or answers slowly: every call stays bounded by the
configured timeout, and no thread spins holding the connection."""

from __future__ import annotations

import queue as queue_module
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from queuebridge_kombu.amqp import AMQPBackend

from queuebridge.backend import Backend
from queuebridge.envelope import Envelope
from queuebridge.errors import BackendUnavailable
from tests.kombu.amqp_helpers import amqp_backend
from tests.kombu.shaping_proxy import ShapingProxy

pytestmark = [pytest.mark.usefixtures("rabbitmq"), pytest.mark.slow]

TIMEOUT = 1.0
SLACK = 1.5
LARGE_ARGUMENT = "x" * 300_000
"""Several AMQP frames: the proxy stalls inside the first body frame."""


@pytest.fixture
def proxy(amqp_backends: list[Backend]) -> Iterator[ShapingProxy]:
    proxy = ShapingProxy()
    yield proxy
    proxy.close()  # torn down before amqp_backends: ends a read stuck on the proxy


@pytest.fixture
def queue() -> str:
    return f"qb-kombu-stall-{uuid.uuid4().hex[:10]}"


def _through(proxy: ShapingProxy, backends: list[Backend], heartbeat: float = 0.0
             ) -> AMQPBackend:
    backend = amqp_backend(f"amqp://guest:guest@127.0.0.1:{proxy.port}//", timeout=TIMEOUT,
                           connect_timeout=TIMEOUT, options={"heartbeat": heartbeat})
    assert isinstance(backend, AMQPBackend)
    backends.append(backend)
    return backend


def _in_thread(work: Callable[[], object], wait: float) -> object:
    """Run ``work`` in a thread; its result or exception, or ``"hung"`` after ``wait``."""
    outcome: queue_module.Queue[object] = queue_module.Queue()

    def run() -> None:
        try:
            outcome.put(work())
        except Exception as exc:  # handed to the test thread
            outcome.put(exc)

    threading.Thread(target=run, daemon=True).start()
    try:
        return outcome.get(timeout=wait)
    except queue_module.Empty:
        return "hung"


def _stall_inside_a_delivery(proxy: ShapingProxy, consumer: Backend, queue: str,
                             backends: list[Backend]) -> None:
    assert consumer.reserve([queue], timeout=0.2) is None  # subscribed through the proxy
    proxy.stall_above = 2000
    direct = amqp_backend()
    backends.append(direct)
    direct.send(Envelope.create("t", (LARGE_ARGUMENT,), queue=queue))
    assert proxy.stalled.wait(timeout=5), "the delivery never reached the proxy"


def test_reserve_fails_fast_when_the_broker_stalls_mid_frame(
        proxy: ShapingProxy, queue: str, amqp_backends: list[Backend]) -> None:
    backend = _through(proxy, amqp_backends)
    _stall_inside_a_delivery(proxy, backend, queue, amqp_backends)

    def reserve_until_it_fails() -> float:
        start = time.monotonic()
        with pytest.raises(BackendUnavailable):
            for _ in range(10):
                backend.reserve([queue], timeout=TIMEOUT)
        return time.monotonic() - start

    elapsed = _in_thread(reserve_until_it_fails, wait=10)
    assert isinstance(elapsed, float), f"reserve: {elapsed!r}"
    # One reserve timeout, then the idle probe's round trip times out.
    assert elapsed < TIMEOUT + TIMEOUT + SLACK, f"took {elapsed:.2f}s"


def test_the_heartbeat_read_never_spins_on_a_partial_frame(
        proxy: ShapingProxy, queue: str, amqp_backends: list[Backend]) -> None:
    backend = _through(proxy, amqp_backends)
    _stall_inside_a_delivery(proxy, backend, queue, amqp_backends)

    def keep_alive_for_half_a_second() -> int:
        calls, until = 0, time.monotonic() + 0.5
        while time.monotonic() < until:
            backend._consumer.keepalive()  # what the heartbeat thread calls
            calls += 1
        return calls

    calls = _in_thread(keep_alive_for_half_a_second, wait=5)
    assert isinstance(calls, int) and calls > 1, f"keepalive: {calls!r}"


def test_depth_is_bounded_by_one_timeout_in_all(
        proxy: ShapingProxy, queue: str, amqp_backends: list[Backend]) -> None:
    backend = _through(proxy, amqp_backends)
    backend.send(Envelope.create("t", queue=queue))
    assert backend.depth(queue) == 1
    proxy.latency = 0.1  # each of its 20+ round trips answers within the timeout
    start = time.monotonic()
    with pytest.raises(BackendUnavailable, match="timed out"):
        backend.depth(queue)
    elapsed = time.monotonic() - start
    assert elapsed < TIMEOUT + 0.5, f"took {elapsed:.2f}s"
    proxy.latency = 0.0
    assert backend.depth(queue) == 1  # reconnects by itself
