"""``queuebridge drill`` from the command line: the embedded default and ``--config``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from queuebridge.cli import cli
from queuebridge.drill.servers import RedisProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

QUICK = ["--jobs", "600", "--rate", "200", "--fault-at", "0.2", "--down-for", "1", "--json"]


def _drill(*args: str) -> dict[str, object]:
    result = CliRunner(env={"QUEUEBRIDGE_CONFIG": None}).invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    report: dict[str, object] = json.loads(result.stdout)
    return report


def test_embedded_drill_passes(tmp_path: Path) -> None:
    report = _drill("drill", *QUICK, "--workdir", str(tmp_path))
    assert report["passed"] is True
    assert report["lost"] == 0
    assert report["executed"] == report["enqueued"] == 600


def test_drill_with_a_config_cuts_the_primary_through_a_proxy(
    tmp_path: Path, redis_server: RedisProcess
) -> None:
    config = tmp_path / "queuebridge.toml"
    config.write_text(f"""
[[queuebridge.backends]]
name = "redis"
type = "rq"
url = "redis://127.0.0.1:{redis_server.port}/0"
timeout = 0.5
connect_timeout = 0.5
lease_timeout = 5

[[queuebridge.backends]]
name = "disk"
type = "kombu"
url = "filesystem://{tmp_path / 'broker'}"

[queuebridge.router]
deadline = 2.0
probe_interval = 0.2
probe_max_interval = 1.0

[queuebridge.spool]
path = "{tmp_path / 'spool.sqlite3'}"
""")
    report = _drill("--config", str(config), "drill", *QUICK)
    assert report["passed"] is True
    assert report["primary"] == "redis"
    assert report["lost"] == 0
    assert report["failover_seconds"] is not None


def test_drill_refuses_a_primary_it_cannot_cut(tmp_path: Path) -> None:
    config = tmp_path / "queuebridge.toml"
    config.write_text(f"""
[[queuebridge.backends]]
name = "disk"
type = "kombu"
url = "filesystem://{tmp_path / 'broker'}"

[[queuebridge.backends]]
name = "disk2"
type = "kombu"
url = "filesystem://{tmp_path / 'broker2'}"
""")
    result = CliRunner(env={"QUEUEBRIDGE_CONFIG": None}).invoke(
        cli, ["--config", str(config), "drill", "--jobs", "10"]
    )
    assert result.exit_code == 1
    assert "queuebridge.backends[0].url" in result.stderr
    assert "TCP primary" in result.stderr
