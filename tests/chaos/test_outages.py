"""Outage drills with real brokers: every job id is counted from enqueue to execution.

Each scenario breaks one backend while a producer enqueues at a steady rate and a
worker consumes from every backend; the report must show lost = 0.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from queuebridge.backend import BackendSettings
from queuebridge.drill import DrillOptions, run_drill
from queuebridge.drill.faultproxy import FaultProxy
from queuebridge.drill.report import DrillReport
from queuebridge.drill.runner import ProxyOutage, run_scenario
from queuebridge.drill.servers import RedisProcess
from queuebridge.settings import RouterSettings, Settings, SpoolSettings
from tests.helpers import wait_until
from tests.rabbit_server import RabbitProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

AMQP = "amqp://guest:guest@127.0.0.1:5672//"
FAST = DrillOptions(jobs=600, rate=200.0, fault_at=0.2, down_for=1.0, settle_timeout=60.0)
ROUTER = RouterSettings(deadline=2.0, probe_interval=0.2, probe_max_interval=1.0,
                        recovery_probes=3)


def _assert_no_loss(report: DrillReport) -> None:
    print(report.render())
    assert report.enqueue_errors == 0, report.render()
    assert report.lost == 0, report.render()
    assert report.executed == report.enqueued == FAST.jobs
    assert report.failover_seconds is not None, "no job ever went to the alternate"
    assert report.failback_seconds is not None, "jobs never returned to the primary"


@pytest.fixture
def amqp_proxy(rabbitmq: None) -> Iterator[FaultProxy]:
    proxy = FaultProxy("127.0.0.1", 5672)
    yield proxy
    proxy.close()


def _via(proxy: FaultProxy) -> str:
    return f"amqp://guest:guest@127.0.0.1:{proxy.port}//"


def test_primary_killed_and_restarted_loses_nothing(tmp_path: Path) -> None:
    report = run_drill(replace(FAST, fault="kill", workdir=tmp_path))
    _assert_no_loss(report)
    assert report.failover_seconds < 1.0, "failover after a refused connection took >= 1 s"


def test_primary_paused_loses_nothing_and_respects_the_deadline(tmp_path: Path) -> None:
    report = run_drill(replace(FAST, fault="pause", workdir=tmp_path))
    _assert_no_loss(report)
    assert report.worst_enqueue_ms <= ROUTER.deadline * 1000 + 250


def test_network_blackhole_to_primary_loses_nothing(tmp_path: Path) -> None:
    report = run_drill(replace(FAST, fault="blackhole", workdir=tmp_path))
    _assert_no_loss(report)
    assert report.worst_enqueue_ms <= ROUTER.deadline * 1000 + 250


def test_rabbitmq_primary_cut_with_redis_alternate_loses_nothing(
    tmp_path: Path, redis_server: RedisProcess, amqp_proxy: FaultProxy
) -> None:
    settings = Settings(
        backends=(
            BackendSettings(name="rabbit", type="kombu", url=_via(amqp_proxy), timeout=0.5,
                            connect_timeout=0.5),
            BackendSettings(name="redis", type="rq", url=redis_server.url, timeout=0.5,
                            connect_timeout=0.5),
        ),
        router=ROUTER,
        spool=SpoolSettings(path=tmp_path / "spool.sqlite3"),
    )
    report = run_scenario(settings, ProxyOutage(amqp_proxy, "kill"), FAST)
    _assert_no_loss(report)


class _RabbitCrash:
    """SIGKILL the private RabbitMQ node, then boot it again (same data)."""

    description = "kill (SIGKILL of the RabbitMQ node)"

    def __init__(self, node: RabbitProcess) -> None:
        self.node = node

    def inject(self) -> None:
        self.node.kill()

    def heal(self) -> None:
        self.node.start()


def test_rabbitmq_primary_killed_with_redis_alternate_loses_nothing(
    tmp_path: Path, redis_server: RedisProcess, private_rabbit: RabbitProcess
) -> None:
    settings = Settings(
        backends=(
            BackendSettings(name="rabbit", type="kombu", url=private_rabbit.url, timeout=0.5,
                            connect_timeout=0.5, lease_timeout=5.0),
            BackendSettings(name="redis", type="rq", url=redis_server.url, timeout=0.5,
                            connect_timeout=0.5, lease_timeout=5.0),
        ),
        router=ROUTER,
        spool=SpoolSettings(path=tmp_path / "spool.sqlite3"),
    )
    report = run_scenario(settings, _RabbitCrash(private_rabbit), FAST)
    _assert_no_loss(report)


PRODUCER = textwrap.dedent(
    """
    import json, os, signal, sys
    from pathlib import Path
    from queuebridge import Bridge
    from queuebridge.backend import BackendSettings
    from queuebridge.plugins import PluginManager
    from queuebridge.settings import RouterSettings, Settings, SpoolSettings

    redis_url, amqp_url, spool = sys.argv[1:4]
    settings = Settings(
        backends=(
            BackendSettings(name="redis", type="rq", url=redis_url, timeout=0.3,
                            connect_timeout=0.3),
            BackendSettings(name="rabbit", type="kombu", url=amqp_url, timeout=0.3,
                            connect_timeout=0.3),
        ),
        router=RouterSettings(deadline=1.0, probe_interval=5.0),
        spool=SpoolSettings(path=Path(spool)),
    )
    bridge = Bridge.from_settings(settings, plugins=PluginManager())
    from queuebridge.envelope import Envelope, new_job_id
    ids = []
    for _ in range(50):
        jid = new_job_id()
        job = Envelope.create("queuebridge.drill.record", (jid,), queue="drill", job_id=jid)
        ref = bridge.submit([job])[0]
        assert ref.backend == "spool", ref
        ids.append(ref.id)
    print(json.dumps(ids), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_both_down_producer_killed_spool_replayed_by_next_process(
    tmp_path: Path, redis_server: RedisProcess, amqp_proxy: FaultProxy
) -> None:
    from queuebridge import Bridge
    from queuebridge.plugins import PluginManager
    from queuebridge.worker import Worker, WorkerOptions

    redis_server.kill()
    amqp_proxy.set_mode("refuse")
    spool = tmp_path / "spool.sqlite3"
    done = subprocess.run(
        [sys.executable, "-c", PRODUCER, redis_server.url, _via(amqp_proxy), str(spool)],
        capture_output=True, timeout=60, text=True, check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    spooled = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert len(spooled) == 50

    redis_server.start()
    amqp_proxy.heal()
    settings = Settings(
        backends=(
            BackendSettings(name="redis", type="rq", url=redis_server.url),
            BackendSettings(name="rabbit", type="kombu", url=_via(amqp_proxy)),
        ),
        router=ROUTER,
        spool=SpoolSettings(path=spool),
    )
    ran: set[str] = set()
    bridge = Bridge.from_settings(settings, plugins=PluginManager())
    bridge.task(name="queuebridge.drill.record", queue="drill")(ran.add)
    # The new process's router finds the spool rows left behind and replays them.
    worker = Worker(bridge, WorkerOptions(queues=("drill",), concurrency=4, burst=False))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: spooled <= ran, timeout=60,
                   message=f"spooled jobs never ran: {sorted(spooled - ran)[:5]}")
    finally:
        worker.stop()
        thread.join(timeout=30)
        bridge.close()
