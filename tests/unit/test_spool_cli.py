"""``queuebridge spool list`` and ``queuebridge spool drain``, on real files and brokers.

The filesystem broker (kombu) receives the replayed jobs, so the test can count them
from another Bridge; a Redis URL on a closed port stands for a backend that refuses.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from queuebridge.bridge import Bridge
from queuebridge.cli import cli
from queuebridge.drill.servers import free_port
from queuebridge.envelope import Envelope
from queuebridge.spool import Spool

pytest.importorskip("queuebridge_kombu")


def write_config(tmp_path: Path, backend: str, *, enabled: bool = True) -> Path:
    config = tmp_path / "queuebridge.toml"
    config.write_text(f"""
[[queuebridge.backends]]
name = "primary"
{backend}
timeout = 0.5
connect_timeout = 0.5

[queuebridge.router]
deadline = 2.0

[queuebridge.spool]
enabled = {str(enabled).lower()}
path = "{tmp_path / 'spool.sqlite3'}"
drain_batch = 3
""")
    return config


def filesystem(tmp_path: Path) -> str:
    return f'type = "kombu"\nurl = "filesystem://{tmp_path / "broker"}"'


def refusing() -> str:
    return f'type = "rq"\nurl = "redis://127.0.0.1:{free_port()}/0"'


def spooled(tmp_path: Path, count: int) -> list[Envelope]:
    envelopes = [Envelope.create("app.task", (n,), queue="default", job_id=f"job-{n:03d}")
                 for n in range(count)]
    spool = Spool(tmp_path / "spool.sqlite3")
    spool.put_many(envelopes)
    spool.close()
    return envelopes


def run(config: Path, *args: str) -> Result:
    environ: dict[str, str | None] = {"QUEUEBRIDGE_CONFIG": None,
                                      "QUEUEBRIDGE_DISABLE_PLUGINS": None}
    return CliRunner(env=environ).invoke(cli, ["--config", str(config), "spool", *args])


def broker_depth(config: Path) -> int:
    with Bridge.from_config(config) as bridge:
        return bridge.backends["primary"].depth("default")


def test_list_shows_the_oldest_first_without_arguments(tmp_path: Path) -> None:
    config = write_config(tmp_path, filesystem(tmp_path))
    spooled(tmp_path, 5)
    result = run(config, "list", "--limit", "2")
    assert result.exit_code == 0, result.output
    header, first, second, footer = result.stdout.splitlines()
    assert header.split()[:4] == ["SEQ", "JOB", "ID", "TASK"]
    assert first.split()[:4] == ["1", "job-000", "app.task", "default"]
    assert first.split()[-1] == "waiting"
    assert second.split()[1] == "job-001"
    assert footer.startswith(f"5 job(s) in {tmp_path / 'spool.sqlite3'} (max 100000)")
    assert "showing the oldest 2" in footer


def test_list_json(tmp_path: Path) -> None:
    config = write_config(tmp_path, filesystem(tmp_path), enabled=False)
    spooled(tmp_path, 2)
    result = run(config, "list", "--json")
    assert result.exit_code == 0, result.output
    listing = json.loads(result.stdout)
    assert (listing["count"], listing["enabled"]) == (2, False)
    assert [job["id"] for job in listing["jobs"]] == ["job-000", "job-001"]
    assert set(listing["jobs"][0]) == {"seq", "id", "task", "queue", "spooled_at",
                                       "claimed_by"}


def test_list_and_drain_never_create_the_file(tmp_path: Path) -> None:
    config = write_config(tmp_path, filesystem(tmp_path))
    assert run(config, "list").stdout.startswith("spool is empty")
    result = run(config, "drain")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "spool.sqlite3").exists()


def test_drain_replays_everything_to_the_live_backend(tmp_path: Path) -> None:
    config = write_config(tmp_path, filesystem(tmp_path))
    spooled(tmp_path, 7)
    result = run(config, "drain")
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith("replayed 7 job(s) from "
                                  f"{tmp_path / 'spool.sqlite3'}; 0 left\n")
    assert "draining" in result.stderr  # the progress bar's label, on stderr
    assert broker_depth(config) == 7
    assert run(config, "list", "--json").stdout.count('"id"') == 0


def test_drain_when_backends_refuse_keeps_the_jobs(tmp_path: Path) -> None:
    config = write_config(tmp_path, refusing())
    spooled(tmp_path, 4)
    result = run(config, "drain", "--batch", "2")
    assert result.exit_code == 1, result.output
    assert "replayed 0 job(s)" in result.stdout
    assert "error: backends refused the jobs, which stay spooled" in result.stderr
    listing = json.loads(run(config, "list", "--json").stdout)
    assert listing["count"] == 4
    assert all(job["claimed_by"] is None for job in listing["jobs"])  # claims released


def test_drain_reports_rows_it_could_not_take(tmp_path: Path) -> None:
    config = write_config(tmp_path, filesystem(tmp_path))
    spooled(tmp_path, 2)
    other = Spool(tmp_path / "spool.sqlite3")
    other._claim(1)  # another live drainer holds the oldest row
    try:
        result = run(config, "drain")
    finally:
        other.close()
    assert result.exit_code == 1, result.output
    assert "replayed 1 job(s)" in result.stdout and "1 left" in result.stdout
    assert "another process is draining them" in result.stderr


@pytest.mark.parametrize("command", ["check", "status"])
def test_read_only_commands_never_replay_the_spool(tmp_path: Path, command: str) -> None:
    config = write_config(tmp_path, filesystem(tmp_path))
    spooled(tmp_path, 3)
    result = CliRunner(env={"QUEUEBRIDGE_CONFIG": None}).invoke(
        cli, ["--config", str(config), command]
    )
    assert result.exit_code in (0, 1), result.output
    spool = Spool(tmp_path / "spool.sqlite3")
    try:
        assert spool.count() == 3, f"`{command}` replayed spooled jobs"
    finally:
        spool.close()
