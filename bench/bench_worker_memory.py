"""Worker throughput on the in-memory backend.

    .venv/bin/python bench/bench_worker_memory.py [--jobs 5000] [--dedup]

Each scenario is (name, job count, seconds each job sleeps, concurrency); each
runner drains one scenario and returns the elapsed seconds. To compare against RQ's
SimpleWorker or Dramatiq later, add a function with the same signature to RUNNERS.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from queuebridge.backend import BackendSettings
from queuebridge.backends.memory import MemoryBackend
from queuebridge.bridge import Bridge
from queuebridge.worker import Worker, WorkerOptions


@dataclass(frozen=True)
class Scenario:
    name: str
    jobs: int
    sleep: float
    concurrency: int

    @property
    def ideal_rate(self) -> float | None:
        return self.concurrency / self.sleep if self.sleep else None


Runner = Callable[[Scenario, Path | None], float]


def queuebridge_threads(scenario: Scenario, state_path: Path | None) -> float:
    """Enqueue ``scenario.jobs`` on a memory backend, then time a burst worker."""
    bridge = Bridge([MemoryBackend(BackendSettings(name="mem", type="memory"))])
    pause = scenario.sleep

    @bridge.task(name="bench.job")
    def job() -> None:
        if pause:
            time.sleep(pause)

    bridge.backends["mem"].send_many([job.job() for _ in range(scenario.jobs)])
    worker = Worker(bridge, WorkerOptions(burst=True, concurrency=scenario.concurrency,
                                          poll_timeout=0.05, state=state_path))
    start = time.perf_counter()
    assert worker.run() == 0
    elapsed = time.perf_counter() - start
    assert worker.stats.succeeded == scenario.jobs, worker.stats
    bridge.close()
    return elapsed


RUNNERS: dict[str, Runner] = {"queuebridge threads": queuebridge_threads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--dedup", action="store_true", help="also run with the dedup store")
    args = parser.parse_args()
    scenarios = [Scenario("no-op", args.jobs, 0.0, 8), Scenario("sleep 50 ms", 500, 0.05, 16)]
    modes: list[tuple[str, bool]] = [("", False)] + ([(" +dedup", True)] if args.dedup else [])
    for label, runner in RUNNERS.items():
        for scenario in scenarios:
            for suffix, dedup in modes:
                with tempfile.TemporaryDirectory() as tmp:
                    state = Path(tmp) / "state.sqlite3" if dedup else None
                    elapsed = runner(scenario, state)
                rate = scenario.jobs / elapsed
                ideal = scenario.ideal_rate
                extra = f"  ({rate / ideal:.0%} of ideal {ideal:.0f}/s)" if ideal else ""
                print(f"{label}{suffix:8} {scenario.name:12} c={scenario.concurrency:<3} "
                      f"{scenario.jobs:>6} jobs {elapsed:7.2f} s {rate:9.0f} jobs/s{extra}")


if __name__ == "__main__":
    main()
