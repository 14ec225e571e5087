"""Benchmark: queuebridge on the rq backend vs raw RQ, same machine, same Redis, one run.

    .venv/bin/python bench/bench_rq.py [--jobs 5000] [--batch 250] [--concurrency 8]

Starts a private redis-server (``--save "" --appendonly no``) on a free port, so the
shared Redis is never touched, and prints a table of rates and ratios:

* enqueue: ``rq.Queue.enqueue`` (JSON serializer) vs ``task.enqueue`` through a Bridge
* batch:   ``task.enqueue_many`` in batches vs ``rq.Queue.enqueue``
* drain:   the queuebridge Worker (burst) vs RQ's ``SimpleWorker(...).work(burst=True)``
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import redis
from _common import fresh_queue, private_redis, timed
from queuebridge_rq import RQBackend
from rq import Queue, SimpleWorker
from rq.serializers import JSONSerializer

from queuebridge import Bridge
from queuebridge.backend import BackendSettings
from queuebridge.worker import Worker, WorkerOptions


def noop(i: int) -> None:
    """The benchmark task: does nothing."""


def importable_noop() -> Callable[[int], None]:
    """``noop`` under an importable module name: RQ refuses functions of ``__main__``
    because its workers import jobs' functions by name."""
    import bench_rq  # this file, imported as a module (its directory is on sys.path)

    return bench_rq.noop


def make_bridge(url: str) -> tuple[Bridge, RQBackend]:
    backend = RQBackend(BackendSettings(name="rq", type="rq", url=url))
    bridge = Bridge([backend])
    return bridge, backend


def bench_raw_enqueue(client: redis.Redis, jobs: int) -> float:
    queue = Queue(fresh_queue("raw"), connection=client, serializer=JSONSerializer)
    func = importable_noop()
    return jobs / timed(lambda: [queue.enqueue(func, i) for i in range(jobs)])


def bench_bridge_enqueue(url: str, jobs: int) -> float:
    bridge, _ = make_bridge(url)
    task = bridge.task(name="bench.noop", queue=fresh_queue("qb"))(noop)
    task.enqueue(-1)  # connect and load scripts outside the timing, as RQ caches its version
    rate = jobs / timed(lambda: [task.enqueue(i) for i in range(jobs)])
    bridge.close()
    return rate


def bench_bridge_enqueue_many(url: str, jobs: int, batch: int) -> float:
    bridge, _ = make_bridge(url)
    task = bridge.task(name="bench.noop", queue=fresh_queue("qbmany"))(noop)
    task.enqueue(-1)

    def run() -> None:
        for start in range(0, jobs, batch):
            task.enqueue_many([(i,) for i in range(start, min(jobs, start + batch))])

    rate = jobs / timed(run)
    bridge.close()
    return rate


def bench_rq_worker(client: redis.Redis, jobs: int) -> float:
    queue = Queue(fresh_queue("rqw"), connection=client, serializer=JSONSerializer)
    func = importable_noop()
    with client.pipeline() as pipe:
        for i in range(jobs):
            queue.enqueue(func, i, pipeline=pipe)
        pipe.execute()
    worker = SimpleWorker([queue], connection=client, serializer=JSONSerializer)
    seconds = timed(lambda: worker.work(burst=True, logging_level="WARNING"))
    assert queue.count == 0
    return jobs / seconds


def bench_bridge_worker(url: str, jobs: int, batch: int, concurrency: int) -> float:
    bridge, backend = make_bridge(url)
    queue = fresh_queue("qbw")
    task = bridge.task(name="bench.noop", queue=queue)(noop)
    for start in range(0, jobs, batch):
        task.enqueue_many([(i,) for i in range(start, min(jobs, start + batch))])
    worker = Worker(bridge, WorkerOptions(queues=(queue,), burst=True, concurrency=concurrency,
                                          poll_timeout=0.2))
    seconds = timed(worker.run)
    assert backend.depth(queue) == 0
    bridge.close()
    return jobs / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    with private_redis() as url:
        client = redis.Redis.from_url(url)
        Queue("warmup", connection=client, serializer=JSONSerializer).enqueue(importable_noop(), 0)
        raw = bench_raw_enqueue(client, args.jobs)
        single = bench_bridge_enqueue(url, args.jobs)
        many = bench_bridge_enqueue_many(url, args.jobs, args.batch)
        rq_worker = bench_rq_worker(client, args.jobs)
        qb_worker = bench_bridge_worker(url, args.jobs, args.batch, args.concurrency)
    rows = [
        ("rq Queue.enqueue (JSON)", raw, "", ""),
        ("queuebridge task.enqueue", single, f"{single / raw:.2f}x", ">= 0.9x"),
        (f"queuebridge enqueue_many ({args.batch}/batch)", many, f"{many / raw:.1f}x", ">= 5x"),
        ("rq SimpleWorker burst", rq_worker, "", ""),
        (f"queuebridge Worker burst (concurrency {args.concurrency})", qb_worker,
         f"{qb_worker / rq_worker:.1f}x", ">= 5x"),
    ]
    print(f"{args.jobs} jobs per measurement, one private redis-server")
    print(f"{'measurement':<48} {'jobs/s':>10} {'ratio':>8} {'target':>8}")
    for name, rate, ratio, target in rows:
        print(f"{name:<48} {rate:>10,.0f} {ratio:>8} {target:>8}")


if __name__ == "__main__":
    main()
