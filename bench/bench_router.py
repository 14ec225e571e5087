"""Router overhead over the memory backend: how much slower is an enqueue through the
router (and through ``Bridge.submit``) than a direct ``MemoryBackend.send``?

    .venv/bin/python bench/bench_router.py [--slices 200] [--size 500]

Three scenarios, each against a direct send to the backend the router picks:

* one healthy backend            (target >= 0.90)
* two healthy backends           (target >= 0.95, vs direct to the first)
* primary broken, on alternate   (target >= 0.80, vs direct to the alternate)

Envelopes are built before timing, so only the send path is measured. Time is the
benchmark thread's CPU time (``time.thread_time``), so other processes on a shared
machine do not count against either side; the contestants take turns on short
slices and the median slice of each is reported.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from queuebridge import Bridge, Envelope
from queuebridge.backend import BackendSettings
from queuebridge.backends.memory import MemoryBackend
from queuebridge.settings import RouterSettings

# Slow probes: the broken primary must not be pinged during a timed round.
ROUTER = RouterSettings(probe_interval=60.0, probe_max_interval=60.0)


@dataclass(frozen=True)
class Scenario:
    name: str
    target: float
    names: tuple[str, ...]
    broken: tuple[str, ...] = ()
    direct_to: str = ""


SCENARIOS = (
    Scenario("1 backend, healthy", 0.90, ("primary",), direct_to="primary"),
    Scenario("2 backends, healthy", 0.95, ("primary", "alternate"), direct_to="primary"),
    Scenario("primary broken -> alternate", 0.80, ("primary", "alternate"),
             broken=("primary",), direct_to="alternate"),
)


def seconds(send: Callable[[Envelope], object], envelopes: Sequence[Envelope]) -> float:
    """CPU seconds per job to send ``envelopes`` one by one."""
    start = time.thread_time()
    for envelope in envelopes:
        send(envelope)
    return (time.thread_time() - start) / len(envelopes)


def build(scenario: Scenario) -> tuple[Bridge, dict[str, MemoryBackend]]:
    backends = {name: MemoryBackend(BackendSettings(name=name, type="memory"))
                for name in scenario.names}
    bridge = Bridge(list(backends.values()), router=ROUTER)
    for name in scenario.broken:
        backends[name].break_()
    bridge.submit([Envelope.create("bench.warmup")])  # opens the broken circuit, if any
    return bridge, backends


def measure(scenario: Scenario, slices: int, size: int) -> list[float]:
    """Median seconds per job of: direct send, ``Router.send_many``, ``Bridge.submit``.

    The contestants take turns on short slices (in rotating order), so a burst of
    load from another process hits all of them alike.
    """
    bridge, backends = build(scenario)
    direct = backends[scenario.direct_to]
    # Each contestant is a one-argument lambda, so call overhead is the same for all.
    router = bridge.router
    contestants: tuple[Callable[[Envelope], object], ...] = (
        lambda envelope: direct.send(envelope),  # noqa: PLW0108 -- same call depth as the others
        lambda envelope: router.send_many((envelope,)),
        lambda envelope: bridge.submit((envelope,)),
    )
    times: list[list[float]] = [[] for _ in contestants]
    for turn in range(slices):
        envelopes = [Envelope.create("bench.job", (n, "x" * 32), {"k": n}) for n in range(size)]
        for offset in range(len(contestants)):
            index = (turn + offset) % len(contestants)
            times[index].append(seconds(contestants[index], envelopes))
    calls = direct.calls
    bridge.close()
    assert calls >= len(contestants) * slices * size, "jobs went elsewhere"
    return [statistics.median(series) for series in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--size", type=int, default=500)
    args = parser.parse_args()
    logging.getLogger("queuebridge").setLevel(logging.ERROR)  # the failover log lines
    print(f"single-job enqueues, {args.slices} slices of {args.size} per contestant, "
          "median CPU time per job\n")
    header = (f"{'scenario':<30} {'direct/s':>10} {'router/s':>10} {'bridge/s':>10} "
              f"{'router':>7} {'bridge':>7} {'target':>7}")
    print(header)
    print("-" * len(header))
    for scenario in SCENARIOS:
        direct, router, bridge = measure(scenario, args.slices, args.size)
        print(f"{scenario.name:<30} {1 / direct:>10,.0f} {1 / router:>10,.0f} "
              f"{1 / bridge:>10,.0f} {direct / router:>7.2f} {direct / bridge:>7.2f} "
              f"{scenario.target:>7.2f}")


if __name__ == "__main__":
    main()
