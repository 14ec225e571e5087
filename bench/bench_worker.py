"""Benchmark: the queuebridge worker vs RQ's SimpleWorker and Dramatiq, one run, one Redis.

    .venv/bin/python bench/bench_worker.py [--jobs 5000] [--no-kombu] [--only qb]

Starts a private redis-server (``--save "" --appendonly no``; the shared one is never
touched) and prints jobs/s and ratios for:

* drain of ``--jobs`` no-op jobs: RQ ``SimpleWorker(...).work(burst=True)``, Dramatiq's
  ``Worker`` (RedisBroker, 8 threads, in-process, stopped when every job completed), and
  the queuebridge worker on the rq backend (burst, concurrency 8), dedup store on and off;
* 500 jobs that sleep 50 ms, concurrency 16, on the rq backend (ideal: 320 jobs/s);
* with RabbitMQ on 127.0.0.1:5672: the same no-op drain on AMQP and on the filesystem
  broker (the Kombu issue's target: >= 2,000 jobs/s).

Only the drains are timed (enqueueing happens before the clock starts, for every side).
"""

from __future__ import annotations

import argparse
import logging
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import redis
from _common import fresh_queue, private_redis, timed
from bench_rq import bench_rq_worker

from queuebridge import Bridge
from queuebridge.backend import Backend, BackendSettings
from queuebridge.worker import Worker, WorkerOptions

AMQP = "amqp://guest:guest@127.0.0.1:5672//"
Result = tuple[str, float, str]
"""(label, jobs/s, note)"""


def rq_simple_worker(url: str, jobs: int) -> float:
    client = redis.Redis.from_url(url)
    try:
        return bench_rq_worker(client, jobs)
    finally:
        client.close()


def dramatiq_worker(url: str, jobs: int, threads: int = 8) -> float:
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    broker = RedisBroker(url=url, namespace=fresh_queue("dramatiq"))
    done = threading.Semaphore(0)

    def noop(i: int) -> None:
        done.release()

    actor = dramatiq.actor(noop, broker=broker, queue_name="default", max_retries=0)
    for i in range(jobs):
        actor.send(i)
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=100)
    start = time.perf_counter()
    worker.start()
    for _ in range(jobs):
        if not done.acquire(timeout=120):
            raise RuntimeError("dramatiq did not finish in time")
    seconds = time.perf_counter() - start
    worker.stop()
    broker.close()
    return jobs / seconds


def queuebridge_drain(backend: Backend, jobs: int, concurrency: int, sleep: float,
                      state: Path | None) -> float:
    """Enqueue ``jobs`` on ``backend``, then time a burst worker draining them."""
    bridge = Bridge([backend])
    queue = fresh_queue("qbw")

    def job(i: int) -> None:
        if sleep:
            time.sleep(sleep)

    task = bridge.task(name="bench.job", queue=queue)(job)
    for start in range(0, jobs, 500):
        task.enqueue_many([(i,) for i in range(start, min(jobs, start + 500))])
    worker = Worker(bridge, WorkerOptions(queues=(queue,), burst=True, concurrency=concurrency,
                                          poll_timeout=0.2, state=state))
    seconds = timed(worker.run)
    assert worker.stats.succeeded == jobs, worker.stats
    bridge.close()
    return jobs / seconds


def with_state(dedup: bool, run: Callable[[Path | None], float]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        return run(Path(tmp) / "state.sqlite3" if dedup else None)


def rq_backend(url: str) -> Backend:
    from queuebridge_rq import RQBackend

    return RQBackend(BackendSettings(name="rq", type="rq", url=url))


def kombu_backend(url: str) -> Backend:
    from queuebridge_kombu import KombuBackend

    return KombuBackend.from_settings(BackendSettings(name="kombu", type="kombu", url=url))


def rabbitmq_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return True
    except OSError:
        return False


def redis_results(url: str, jobs: int, only: str | None) -> list[Result]:
    results: list[Result] = []
    if only in (None, "rq"):
        results.append(("RQ SimpleWorker (burst)", rq_simple_worker(url, jobs), ""))
    if only in (None, "dramatiq"):
        results.append(("Dramatiq Worker (8 threads)", dramatiq_worker(url, jobs), ""))
    if only in (None, "qb"):
        for dedup in (True, False):
            rate = with_state(dedup, lambda state: queuebridge_drain(
                rq_backend(url), jobs, 8, 0.0, state))
            label = f"queuebridge rq, c=8, dedup {'on' if dedup else 'off'}"
            results.append((label, rate, ""))
        for dedup in (True, False):
            rate = with_state(dedup, lambda state: queuebridge_drain(
                rq_backend(url), 500, 16, 0.05, state))
            label = f"queuebridge rq, 500 x 50 ms, c=16, dedup {'on' if dedup else 'off'}"
            results.append((label, rate, f"{rate / 320:.0%} of ideal 320/s"))
    return results


def kombu_results(jobs: int) -> list[Result]:
    results: list[Result] = []
    for dedup in (True, False):
        suffix = f"dedup {'on' if dedup else 'off'}"
        rate = with_state(dedup, lambda state: queuebridge_drain(
            kombu_backend(AMQP), jobs, 8, 0.0, state))
        results.append((f"queuebridge AMQP, c=8, {suffix}", rate, "target >= 2,000/s"))
        with tempfile.TemporaryDirectory() as folder:
            rate = with_state(dedup, lambda state, url=f"filesystem://{folder}":
                              queuebridge_drain(kombu_backend(url), jobs, 8, 0.0, state))
        results.append((f"queuebridge filesystem, c=8, {suffix}", rate, "target >= 2,000/s"))
    return results


def render(results: list[Result]) -> None:
    rates = {label: rate for label, rate, _ in results}
    rq_rate = rates.get("RQ SimpleWorker (burst)")
    dramatiq_rate = rates.get("Dramatiq Worker (8 threads)")
    for label, rate, note in results:
        ratios = []
        if label.startswith("queuebridge") and "50 ms" not in label:
            if rq_rate and "rq," in label:
                ratios.append(f"{rate / rq_rate:.1f}x RQ (target 5x)")
            if dramatiq_rate and "rq," in label:
                ratios.append(f"{rate / dramatiq_rate:.2f}x Dramatiq (target 1x)")
        extra = "  ".join(filter(None, [note, *ratios]))
        print(f"{label:48} {rate:8.0f} jobs/s  {extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--no-kombu", action="store_true", help="skip the AMQP/filesystem drains")
    parser.add_argument("--only", choices=("rq", "dramatiq", "qb"), default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    with private_redis() as url:
        results = redis_results(url, args.jobs, args.only)
    if not args.no_kombu and args.only in (None, "qb") and rabbitmq_up():
        results += kombu_results(args.jobs)
    render(results)


if __name__ == "__main__":
    main()
