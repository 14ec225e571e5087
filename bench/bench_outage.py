"""Outage routing on real brokers, in one run: what failover costs per job, and how fast it is.

    .venv/bin/python bench/bench_outage.py [--slices 40] [--size 100]     # ~40 s

A private ``redis-server`` (AOF, ``appendfsync always``: the drill's server) is the
primary (``rq``), the filesystem broker (``kombu``, ``filesystem://<tmp>``) the alternate.

1. **Both healthy**: ``Bridge.submit([envelope])`` vs a direct ``RQBackend.send(envelope)``
   (target ratio >= 0.95).
2. **Primary SIGKILLed**: ``Bridge.submit`` (now on the alternate) vs a direct filesystem
   ``send`` (target >= 0.8: a dead broker is not probed per job).
3. **Failover time** with steady enqueues running (one every 2 ms): from the fault to
   the first enqueue accepted by the alternate. Refused connection (SIGKILL): < 1 s.
   Hang (SIGSTOP, and a blackhole through the drill's ``FaultProxy``): < deadline +
   probe interval.

Rates are wall-clock (the broker round trip is the point). The two contestants take turns
on short slices, and the ratio reported is the median of the per-turn ratios, so drift in
the load of a shared machine hits both alike; the client's CPU-time ratio is shown beside.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from queuebridge import Bridge, Envelope
from queuebridge.backend import Backend, BackendSettings
from queuebridge.drill.faultproxy import FaultProxy
from queuebridge.drill.servers import RedisProcess
from queuebridge.errors import EnqueueError
from queuebridge.plugins import PluginManager
from queuebridge.settings import RouterSettings, SpoolSettings

ROUTER = RouterSettings(deadline=2.0, probe_interval=0.5, probe_max_interval=2.0)
TIMEOUT = 0.5
"""The primary's operation timeout: what a hang costs the enqueues in flight."""
QUEUE = "bench"
PLUGINS = PluginManager()


def backend(kind: str, name: str, url: str) -> Backend:
    settings = BackendSettings(name=name, type=kind, url=url, timeout=TIMEOUT if kind == "rq"
                               else 1.0, connect_timeout=TIMEOUT)
    return PLUGINS.backend_types()[kind].backend_class.from_settings(settings)


def pair(redis_url: str, broker: Path) -> tuple[Bridge, Backend, Backend]:
    """A Bridge over a fresh rq primary and filesystem alternate (no spool: refusals count)."""
    primary = backend("rq", "primary", redis_url)
    alternate = backend("kombu", "alternate", f"filesystem://{broker}")
    bridge = Bridge([primary, alternate], router=ROUTER, spool=SpoolSettings(enabled=False),
                    plugins=PLUGINS)
    return bridge, primary, alternate


def jobs(size: int) -> list[Envelope]:
    return [Envelope.create("bench.job", (n, "x" * 32), {"k": n}, queue=QUEUE)
            for n in range(size)]


@dataclass(frozen=True)
class Rates:
    """Median jobs/s of a direct send and of the Bridge, and the median per-turn ratios."""

    direct: float
    bridge: float
    ratio: float
    """Median of bridge/direct over turns: each turn times both within ~0.1 s, so drift
    in the machine's load cancels out."""
    cpu_ratio: float
    """The same by this thread's CPU time: what the client itself spends."""


def rates(direct: Callable[[Envelope], object], bridged: Callable[[Envelope], object],
          slices: int, size: int) -> Rates:
    """Time one job per call for each contestant, in alternating order, ``slices`` times."""
    wall: dict[int, list[float]] = {0: [], 1: []}
    cpu: dict[int, list[float]] = {0: [], 1: []}
    contestants = (direct, bridged)
    for turn in range(slices):
        for index in (turn % 2, 1 - turn % 2):
            send, batch = contestants[index], jobs(size)
            start, start_cpu = time.perf_counter(), time.thread_time()
            for envelope in batch:
                send(envelope)
            wall[index].append(time.perf_counter() - start)
            cpu[index].append(time.thread_time() - start_cpu)
    return Rates(size / statistics.median(wall[0]), size / statistics.median(wall[1]),
                 statistics.median(d / b for d, b in zip(wall[0], wall[1], strict=True)),
                 statistics.median(d / b for d, b in zip(cpu[0], cpu[1], strict=True)))


class Producer:
    """Enqueues one job every ``pace`` seconds, recording when each returned and where."""

    def __init__(self, bridge: Bridge, pace: float = 0.002) -> None:
        self.bridge, self.pace = bridge, pace
        self.accepted: list[tuple[float, float, str]] = []
        """(started, returned, backend) per accepted job."""
        self.refused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Producer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.pace):
            started = time.perf_counter()
            try:
                (ref,) = self.bridge.submit([Envelope.create("bench.job", queue=QUEUE)])
            except EnqueueError:
                self.refused += 1
                continue
            self.accepted.append((started, time.perf_counter(), ref.backend))

    def first_elsewhere(self, since: float, primary: str, timeout: float = 10.0) -> float:
        """Seconds from ``since`` to the first job accepted by another backend."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            for _, returned, where in list(self.accepted):
                if returned >= since and where != primary:
                    return returned - since
            time.sleep(0.01)
        raise RuntimeError(f"no failover within {timeout}s")

    def worst_after(self, since: float) -> float:
        """The slowest enqueue that returned after ``since``."""
        return max((returned - started for started, returned, _ in self.accepted
                    if returned >= since), default=0.0)


@contextmanager
def failover(redis_url: str, broker: Path, inject: Callable[[], None],
             heal: Callable[[], None]) -> Iterator[dict[str, float]]:
    """Run steady enqueues, inject the fault, measure; heal and close afterwards."""
    bridge, _, _ = pair(redis_url, broker)
    result: dict[str, float] = {}
    try:
        with Producer(bridge) as producer:
            time.sleep(0.3)  # healthy traffic first, so connections are open and warm
            fault = time.perf_counter()
            inject()
            result["failover"] = producer.first_elsewhere(fault, "primary")
            time.sleep(0.5)
            result["worst"] = producer.worst_after(fault)
            result["refused"] = producer.refused
        yield result
    finally:
        heal()
        bridge.close()


def throughput(redis: RedisProcess, broker: Path, slices: int, size: int
               ) -> list[tuple[str, Rates, float]]:
    """(scenario, rates, target) for both-healthy and primary-killed."""
    bridge, primary, alternate = pair(redis.url, broker)
    healthy = rates(primary.send, lambda e: bridge.submit([e]), slices, size)
    redis.kill()
    bridge.submit(jobs(1))  # opens the primary's circuit
    assert bridge.router.preferred == "alternate"
    dead = rates(alternate.send, lambda e: bridge.submit([e]), slices, size)
    bridge.close()
    redis.start()
    return [("2 backends healthy vs direct rq", healthy, 0.95),
            ("primary killed vs direct fs", dead, 0.80)]


def failovers(redis: RedisProcess, workdir: Path) -> list[tuple[str, dict[str, float], float]]:
    """(fault, measurements, target seconds) for SIGKILL, SIGSTOP and a blackhole."""
    hang_target = ROUTER.deadline + ROUTER.probe_interval
    found = []
    with failover(redis.url, workdir / "fs", redis.kill, redis.start) as killed:
        found.append(("refused (SIGKILL)", killed, 1.0))
    with failover(redis.url, workdir / "fs", redis.pause, redis.resume) as paused:
        found.append(("hang (SIGSTOP)", paused, hang_target))
    proxy = FaultProxy("127.0.0.1", redis.port)
    try:
        with failover(f"redis://127.0.0.1:{proxy.port}/0", workdir / "fs",
                      lambda: proxy.set_mode("blackhole"), proxy.heal) as blackholed:
            found.append(("hang (blackhole proxy)", blackholed, hang_target))
    finally:
        proxy.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=40)
    parser.add_argument("--size", type=int, default=100)
    args = parser.parse_args()
    logging.getLogger("queuebridge").setLevel(logging.ERROR)  # the transition log lines
    with tempfile.TemporaryDirectory(prefix="qb-bench-outage-") as tmp:
        workdir = Path(tmp)
        redis = RedisProcess(workdir / "redis")
        redis.start()
        try:
            rows = throughput(redis, workdir / "fs", args.slices, args.size)
            faults = failovers(redis, workdir)
        finally:
            redis.stop()
    print(f"single-job enqueues, {args.slices} interleaved slices of {args.size}, medians\n")
    print(f"{'scenario':<34} {'direct/s':>9} {'bridge/s':>9} {'ratio':>6} {'CPU ratio':>10} "
          f"{'target':>7}")
    for name, rate, target in rows:
        print(f"{name:<34} {rate.direct:>9,.0f} {rate.bridge:>9,.0f} {rate.ratio:>6.2f} "
              f"{rate.cpu_ratio:>10.2f} {'>= ':>4}{target:.2f}"
              f"  {'ok' if rate.ratio >= target else 'MISSED'}")
    print(f"\n{'fault (steady enqueues, 1 per 2 ms)':<34} {'failover':>9} {'worst':>9} "
          f"{'refused':>8} {'target':>8}")
    for name, measured, target in faults:
        print(f"{name:<34} {measured['failover']:>8.3f}s {measured['worst']:>8.3f}s "
              f"{measured['refused']:>8.0f} {'< ':>3}{target:.1f}s"
              f"  {'ok' if measured['failover'] < target else 'MISSED'}")


if __name__ == "__main__":
    main()
