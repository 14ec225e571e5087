"""Benchmark: queuebridge on the kombu backend vs raw Kombu, same machine, one run.

    .venv/bin/python bench/bench_kombu.py [--jobs 5000] [--batch 250] [--concurrency 8 16]
        [--url amqp://guest:guest@127.0.0.1:5672//] [--drain-only]

Uses the RabbitMQ at ``--url`` (fresh queues, deleted afterwards) and a temporary
folder for the filesystem broker. Prints a table of rates and ratios:

* AMQP enqueue: Kombu ``Producer.publish`` with publisher confirms vs ``task.enqueue``
* AMQP batch:   ``task.enqueue_many`` in batches vs that raw confirmed publish
* filesystem:   Kombu's filesystem transport publish vs ``task.enqueue`` (fsync'd) and
  ``task.enqueue_many``
* backend drain: one thread leasing with ``reserve_many(16)`` and acking (no worker)
* drain:        the queuebridge Worker (burst, dedup store on) running no-op jobs, on AMQP
  and filesystem, at each ``--concurrency``
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import kombu
from _common import fresh_queue, timed
from queuebridge_kombu import KombuBackend
from queuebridge_kombu.amqp import AMQPBackend

from queuebridge import Bridge
from queuebridge.backend import Backend, BackendSettings
from queuebridge.worker import Worker, WorkerOptions

QUEUES_TO_DELETE: set[str] = set()


def noop(i: int) -> None:
    """The benchmark task: does nothing."""


def make_bridge(url: str) -> tuple[Bridge, Backend]:
    backend = KombuBackend.from_settings(BackendSettings(name="kombu", type="kombu", url=url))
    return Bridge([backend]), backend


def close_bridge(bridge: Bridge, backend: Backend) -> None:
    if isinstance(backend, AMQPBackend):
        QUEUES_TO_DELETE.update(backend.declared_queues())
    bridge.close()


def bench_raw_confirmed(url: str, jobs: int) -> float:
    queue = fresh_queue("raw")
    QUEUES_TO_DELETE.add(queue)
    with kombu.Connection(url, transport_options={"confirm_publish": True}) as conn:
        exchange = kombu.Exchange("bench-raw", "direct", durable=True)
        kombu.Queue(queue, exchange, routing_key=queue, durable=True)(conn.channel()).declare()
        producer = kombu.Producer(conn.channel(), exchange=exchange, routing_key=queue,
                                  serializer="json")
        producer.publish({"i": -1}, delivery_mode=2)  # warm up outside the timing
        return jobs / timed(lambda: [producer.publish({"i": i}, delivery_mode=2)
                                     for i in range(jobs)])


def bench_raw_filesystem(folder: Path, jobs: int) -> float:
    data = folder / "raw"
    data.mkdir()
    options = {"data_folder_in": str(data), "data_folder_out": str(data)}
    with kombu.Connection("filesystem://", transport_options=options) as conn:
        producer = kombu.Producer(conn.channel(), routing_key="raw", serializer="json")
        producer.publish({"i": -1})
        return jobs / timed(lambda: [producer.publish({"i": i}) for i in range(jobs)])


def bench_enqueue(url: str, jobs: int) -> float:
    bridge, backend = make_bridge(url)
    task = bridge.task(name="bench.noop", queue=fresh_queue("qb"))(noop)
    task.enqueue(-1)  # connect and declare outside the timing, as the raw side does
    rate = jobs / timed(lambda: [task.enqueue(i) for i in range(jobs)])
    close_bridge(bridge, backend)
    return rate


def enqueue_in_batches(task: Any, jobs: int, batch: int) -> None:
    for start in range(0, jobs, batch):
        task.enqueue_many([(i,) for i in range(start, min(jobs, start + batch))])


def bench_enqueue_many(url: str, jobs: int, batch: int) -> float:
    bridge, backend = make_bridge(url)
    task = bridge.task(name="bench.noop", queue=fresh_queue("qbmany"))(noop)
    task.enqueue(-1)
    rate = jobs / timed(lambda: enqueue_in_batches(task, jobs, batch))
    close_bridge(bridge, backend)
    return rate


def bench_backend_drain(url: str, jobs: int, batch: int) -> float:
    bridge, backend = make_bridge(url)
    queue = fresh_queue("qbb")
    task = bridge.task(name="bench.noop", queue=queue)(noop)
    enqueue_in_batches(task, jobs, batch)

    def drain() -> None:
        done = 0
        while done < jobs:
            for delivery in backend.reserve_many([queue], 16, timeout=1.0):
                backend.ack(delivery)
                done += 1

    rate = jobs / timed(drain)
    close_bridge(bridge, backend)
    return rate


def bench_drain(url: str, jobs: int, batch: int, concurrency: int, state: Path) -> float:
    bridge, backend = make_bridge(url)
    queue = fresh_queue("qbw")
    task = bridge.task(name="bench.noop", queue=queue)(noop)
    enqueue_in_batches(task, jobs, batch)
    worker = Worker(bridge, WorkerOptions(queues=(queue,), burst=True, concurrency=concurrency,
                                          poll_timeout=0.2, state=state))
    seconds = timed(worker.run)
    assert backend.depth(queue) == 0, "the worker left jobs behind"
    close_bridge(bridge, backend)
    return jobs / seconds


def delete_queues(url: str) -> None:
    with kombu.Connection(url) as conn:
        channel = conn.channel()
        for name in sorted(QUEUES_TO_DELETE):
            channel.queue_delete(name)


Row = tuple[str, float, str, str]


def enqueue_rows(url: str, fs_url: str, folder: Path, n: int, b: int) -> list[Row]:
    raw = bench_raw_confirmed(url, n)
    single = bench_enqueue(url, n)
    many = bench_enqueue_many(url, n, b)
    raw_fs = bench_raw_filesystem(folder, n)
    fs_single = bench_enqueue(fs_url, n)
    fs_many = bench_enqueue_many(fs_url, n, b)
    return [
        ("kombu Producer.publish, confirm_publish", raw, "", ""),
        ("queuebridge task.enqueue (AMQP)", single, f"{single / raw:.2f}x", ">= 0.9x"),
        (f"queuebridge enqueue_many (AMQP, {b}/batch)", many, f"{many / raw:.1f}x", ">= 5x"),
        ("kombu filesystem transport publish (no fsync)", raw_fs, "", ""),
        ("queuebridge task.enqueue (filesystem, fsync)", fs_single, f"{fs_single / raw_fs:.2f}x",
         ""),
        (f"queuebridge enqueue_many (filesystem, {b}/batch)", fs_many,
         f"{fs_many / raw_fs:.2f}x", ""),
    ]


def drain_rows(url: str, fs_url: str, folder: Path, n: int, b: int,
               concurrencies: list[int]) -> list[Row]:
    rows: list[Row] = []
    for label, target in (("AMQP", url), ("filesystem", fs_url)):
        rows.append((f"backend reserve_many(16) + ack, {label}",
                     bench_backend_drain(target, n, b), "", ""))
        for c in concurrencies:
            state = folder / f"worker-{label}-{c}.sqlite3"
            rows.append((f"queuebridge Worker burst, {label} (concurrency {c})",
                         bench_drain(target, n, b, c, state), "", ">= 2,000/s"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672//")
    parser.add_argument("--drain-only", action="store_true", help="skip the enqueue rows")
    args = parser.parse_args()
    n, b = args.jobs, args.batch
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        folder = Path(tmp).resolve()
        fs_url = f"filesystem://{folder}/broker"
        try:
            rows = [] if args.drain_only else enqueue_rows(args.url, fs_url, folder, n, b)
            rows += drain_rows(args.url, fs_url, folder, n, b, args.concurrency)
        finally:
            delete_queues(args.url)
    print(f"{n} jobs per measurement; RabbitMQ at {args.url.split('@')[-1]}")
    print(f"{'measurement':<54} {'jobs/s':>10} {'ratio':>8} {'target':>11}")
    for name, rate, ratio, target in rows:
        print(f"{name:<54} {rate:>10,.0f} {ratio:>8} {target:>11}")


if __name__ == "__main__":
    main()
