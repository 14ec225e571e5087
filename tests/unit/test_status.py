"""``queuebridge status``: backends, since when, spool, workers, exit codes, --watch."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from queuebridge.backend import BackendSettings
from queuebridge.backends.memory import MemoryBackend
from queuebridge.bridge import Bridge
from queuebridge.cli import cli, render_status
from queuebridge.drill.servers import free_port
from queuebridge.envelope import Envelope
from queuebridge.heartbeat import SQLiteHeartbeats, WorkerInfo
from queuebridge.plugins import PluginManager
from queuebridge.settings import RouterSettings, Settings, SpoolSettings, WorkerSettings
from queuebridge.spool import Spool
from queuebridge.status import (
    BackendStatus,
    Overall,
    SpoolStatus,
    StateTracker,
    StatusReport,
    bridge_status,
    format_age,
    watch_status,
)

SECRET = "st4tus-s3cret"


def memory_bridge(tmp_path: Path, *, spool: bool = True, max_jobs: int = 100
                  ) -> tuple[Bridge, list[MemoryBackend]]:
    backends = [MemoryBackend(BackendSettings(name=name, type="memory", timeout=0.3,
                                              url=f"redis://:{SECRET}@{name}:6379/0"))
                for name in ("primary", "alternate")]
    settings = Settings(
        backends=tuple(b.settings for b in backends),
        router=RouterSettings(probe_interval=60.0, probe_max_interval=60.0),
        spool=SpoolSettings(enabled=spool, path=tmp_path / "spool.sqlite3", max_jobs=max_jobs),
        worker=WorkerSettings(queues=("high", "default"), state=str(tmp_path / "w.sqlite3")),
    )
    return Bridge(backends, settings=settings, plugins=PluginManager(entry_points=False)), backends


def report_of(*ups: bool, spool: SpoolStatus | None = None) -> StatusReport:
    backends = tuple(BackendStatus(f"b{i}", "memory", "memory://", up=up)
                     for i, up in enumerate(ups))
    return StatusReport("<code>", (), backends, spool=spool)


def test_overall_state_and_exit_codes() -> None:
    room = SpoolStatus("s", enabled=True, max_jobs=10, count=3)
    assert report_of(True, True).overall is Overall.UP
    assert report_of(False, True).overall is Overall.DEGRADED
    assert report_of(False, False, spool=room).overall is Overall.SPOOLING
    assert report_of(False, False).overall is Overall.DOWN
    full = SpoolStatus("s", enabled=True, max_jobs=3, count=3)
    unreadable = SpoolStatus("s", enabled=True, max_jobs=3, count=None, error="locked")
    off = SpoolStatus("s", enabled=False, max_jobs=3, count=0)
    for spool in (full, unreadable, off):
        assert report_of(False, False, spool=spool).overall is Overall.DOWN
    assert [state.exit_code for state in Overall] == [0, 1, 1, 2]


def test_bridge_status_table_and_json(tmp_path: Path) -> None:
    bridge, (primary, alternate) = memory_bridge(tmp_path)
    alternate.send(Envelope.create("t", queue="high"))
    primary.break_()
    report = bridge_status(bridge, ("high", "default"))
    bridge.close()
    assert report.overall is Overall.DEGRADED
    text = render_status(report)
    lines = text.splitlines()
    assert lines[1].split() == ["BACKEND", "TYPE", "STATE", "SINCE", "LATENCY", "DOWNS",
                                "high", "default", "URL"]
    assert lines[2].split()[:7] == ["primary", "memory", "down", "-", "-", "1", "-"]
    assert lines[3].split()[:3] == ["alternate", "memory", "up"]
    assert lines[3].split()[6:9] == ["0", "1", "0"]  # downs, high, default (after "x ms")
    assert f"spool: empty ({tmp_path / 'spool.sqlite3'})" in lines
    assert f"workers: none registered ({tmp_path / 'w.sqlite3'})" in lines
    assert lines[-1] == "state: degraded (1 of 2 backends up)"
    data = report.to_dict()
    assert json.loads(json.dumps(data)) == data
    down, up = data["backends"]
    assert (down["state"], down["down_count"], down["since_exact"]) == ("down", 1, False)
    assert isinstance(up["since"], float) and up["depths"] == {"high": 1, "default": 0}
    assert data["spool"]["count"] == 0 and data["workers"]["live"] == 0
    assert SECRET not in text and SECRET not in json.dumps(data)
    assert not (tmp_path / "spool.sqlite3").exists()  # status never creates files
    assert not (tmp_path / "w.sqlite3").exists()


def test_spool_count_and_spooling_state(tmp_path: Path) -> None:
    bridge, backends = memory_bridge(tmp_path)
    for backend in backends:
        backend.break_()
    for n in range(3):
        assert bridge.submit([Envelope.create("t", (n,))])[0].backend == "spool"
    report = bridge_status(bridge, ("default",))
    bridge.close()
    assert report.spool is not None
    assert (report.spool.count, report.overall) == (3, Overall.SPOOLING)
    assert report.spool.oldest_at is not None
    assert report.spool.oldest_at <= report.checked_at
    assert "spool: 3 job(s) waiting in" in render_status(report)
    assert render_status(report).endswith(
        "state: spooling (0 of 2 backends up; new jobs go to the spool)")
    # The router saw both go down: since when is known exactly.
    assert all(b.since_exact and b.down_count == 1 for b in report.backends)


def test_full_spool_is_not_accepting(tmp_path: Path) -> None:
    bridge, backends = memory_bridge(tmp_path, max_jobs=1)
    Spool(tmp_path / "spool.sqlite3", 1).put_many([Envelope.create("t")])
    for backend in backends:
        backend.break_()
    report = bridge_status(bridge, ())
    bridge.close()
    assert report.overall is Overall.DOWN
    assert "FULL" in render_status(report)


def test_live_and_dead_workers(tmp_path: Path) -> None:
    store = SQLiteHeartbeats(tmp_path / "w.sqlite3")
    store.beat(WorkerInfo("web-1:10", "web-1", 10, ("primary",), ("default",), interval=60))
    store.beat(WorkerInfo("web-2:20", "web-2", 20, ("primary",), ("default",), interval=1e-6))
    store.close()
    bridge, _ = memory_bridge(tmp_path)
    report = bridge_status(bridge, ())
    bridge.close()
    assert report.workers is not None
    assert [w.name for w in report.workers.live] == ["web-1:10"]
    assert "workers: 1 live (web-1:10), 1 dead" in render_status(report)
    workers = report.to_dict()["workers"]
    assert (workers["live"], workers["dead"]) == (1, 1)
    assert [w["alive"] for w in workers["workers"]] == [True, False]


def test_tracker_dates_changes_between_probes() -> None:
    tracker = StateTracker()
    up, down = (BackendStatus("b", "memory", "m", up=flag) for flag in (True, False))
    first = tracker.observe(up, 100.0)
    assert (first.since, first.since_exact, first.down_count) == (100.0, False, 0)
    assert tracker.observe(up, 105.0).since == 100.0
    went_down = tracker.observe(down, 110.0)
    assert (went_down.since, went_down.since_exact, went_down.down_count) == (110.0, True, 1)
    back = tracker.observe(up, 120.0)
    assert (back.since, back.down_count) == (120.0, 1)
    assert tracker.observe(down, 130.0).down_count == 2


def test_format_age() -> None:
    assert [format_age(s) for s in (0.4, 42, 185, 7440, 270000)] == [
        "0s", "42s", "3m05s", "2h04m", "3d03h"]


def test_watch_refreshes_until_ctrl_c() -> None:
    reports = iter([report_of(True), report_of(False), report_of(False, True)])
    shown: list[StatusReport] = []
    waits: list[float] = []

    def wait(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:
            raise KeyboardInterrupt

    last = watch_status(lambda: next(reports), shown.append, 0.5, wait=wait)
    assert len(shown) == 3 and waits == [0.5, 0.5, 0.5]
    assert last.overall is Overall.DEGRADED


# -- the command --------------------------------------------------------------------


def cli_config(tmp_path: Path, *, max_jobs: int = 10) -> Path:
    port = free_port()
    config = tmp_path / "queuebridge.toml"
    config.write_text(f"""
[[queuebridge.backends]]
name = "primary"
type = "rq"
url = "redis://:{SECRET}@127.0.0.1:{port}/0"
timeout = 0.3
connect_timeout = 0.3

[queuebridge.spool]
path = "{tmp_path / 'spool.sqlite3'}"
max_jobs = {max_jobs}

[queuebridge.worker]
state = "{tmp_path / 'w.sqlite3'}"
""")
    return config


def run(config: Path, *args: str) -> Result:
    environ: dict[str, str | None] = {"QUEUEBRIDGE_CONFIG": None,
                                      "QUEUEBRIDGE_DISABLE_PLUGINS": None}
    return CliRunner(env=environ).invoke(cli, ["--config", str(config), "status", *args])


def test_cli_all_down_with_spool_is_1_and_full_spool_is_2(tmp_path: Path) -> None:
    pytest.importorskip("queuebridge_rq")
    config = cli_config(tmp_path, max_jobs=2)
    Spool(tmp_path / "spool.sqlite3").put_many([Envelope.create("t")])
    result = run(config)
    assert result.exit_code == 1, result.output
    assert "spool: 1 job(s) waiting" in result.stdout
    assert "state: spooling" in result.stdout
    assert SECRET not in result.output
    Spool(tmp_path / "spool.sqlite3").put_many([Envelope.create("t")])
    result = run(config, "--json")
    assert result.exit_code == 2, result.output
    data = json.loads(result.stdout)
    assert (data["state"], data["spool"]["count"]) == ("down", 2)
    assert SECRET not in result.output


def test_cli_watch_prints_json_lines_until_ctrl_c(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("queuebridge_rq")
    config = cli_config(tmp_path)
    naps: list[float] = []

    def nap(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(time, "sleep", nap)
    result = run(config, "--watch", "0.25", "--json")
    assert result.exit_code == 1, result.output
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert naps == [0.25, 0.25]
    assert first["backends"][0]["state"] == second["backends"][0]["state"] == "down"
    # The second look knows the first: the state began at least one refresh ago.
    assert second["backends"][0]["since"] == first["backends"][0]["since"]
