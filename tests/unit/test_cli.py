"""The ``queuebridge`` command: every command, its exit codes, redaction, --app."""

from __future__ import annotations

import importlib
import json
import logging
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner, Result

from queuebridge.backend import BackendSettings
from queuebridge.backends.memory import MemoryBackend
from queuebridge.cli import cli
from queuebridge.status import Overall, gather_status

SECRET = "pa55-w0rd-XYZ"
CONFIG = """
[[queuebridge.backends]]
name = "primary"
type = "memory"
url = "redis://user:${QB_TEST_PASSWORD}@redis.internal:6379/0"
timeout = 1.5

[[queuebridge.backends]]
name = "alternate"
type = "memory"

[queuebridge.spool]
enabled = false

[queuebridge.worker]
queues = ["high", "default"]
"""

APP = """
from queuebridge import Bridge, BackendSettings
from queuebridge.backends.memory import MemoryBackend
from queuebridge.settings import SpoolSettings

done = []
backends = [MemoryBackend(BackendSettings(name=name, type="memory", timeout=0.5))
            for name in ("one", "two")]
bridge = Bridge(backends, spool=SpoolSettings(enabled=False))
not_a_bridge = 42

@bridge.task(name="app.record")
def record(value):
    done.append(value)
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    file = tmp_path / "queuebridge.toml"
    file.write_text(CONFIG)
    return file


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """A fresh application module on sys.path, with two memory backends and one task."""
    name = f"qb_cli_app_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(name)
    yield module
    module.bridge.close()
    monkeypatch.delitem(sys.modules, name)


def run(*args: str, env: dict[str, str | None] | None = None) -> Result:
    environ: dict[str, str | None] = {"QB_TEST_PASSWORD": SECRET, "QUEUEBRIDGE_CONFIG": None,
                                      "QUEUEBRIDGE_DISABLE_PLUGINS": None}
    return CliRunner(env={**environ, **(env or {})}).invoke(cli, list(args))


def assert_one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert result.stderr.endswith(errors[0] + "\n"), "the error is the last line"
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in errors[0]


# -- check -------------------------------------------------------------------------------------


def test_check_prints_resolved_backends_redacted(config: Path) -> None:
    result = run("--config", str(config), "check")
    assert result.exit_code == 0, result.output
    assert f"config: {config}" in result.stdout
    primary = next(line for line in result.stdout.splitlines() if line.startswith("primary"))
    assert primary.split() == ["primary", "memory", "redis://user:***@redis.internal:6379/0",
                               "1.5s", "2s", "60s"]
    assert "alternate" in result.stdout
    assert SECRET not in result.output


def test_check_reports_config_errors_on_one_line(config: Path) -> None:
    config.write_text(CONFIG.replace("timeout = 1.5", "timeout = -1"))
    result = run("--config", str(config), "check")
    assert_one_line_error(result, str(config), "queuebridge.backends[0].timeout", "> 0")
    assert SECRET not in result.output


def test_check_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    assert_one_line_error(run("--config", str(missing), "check"), str(missing), "not found")


def test_config_from_the_environment(config: Path) -> None:
    result = run("check", env={"QUEUEBRIDGE_CONFIG": str(config)})
    assert result.exit_code == 0, result.output
    assert str(config) in result.stdout


def test_check_with_app_counts_tasks(app: ModuleType) -> None:
    result = run("--app", f"{app.__name__}:bridge", "check")
    assert result.exit_code == 0, result.output
    assert f"app: {app.__name__}:bridge (1 tasks)" in result.stdout


def test_app_named_in_config_is_used(config: Path, app: ModuleType) -> None:
    config.write_text(f'[queuebridge]\napp = "{app.__name__}:bridge"\n' + CONFIG)
    result = run("--config", str(config), "check")
    assert result.exit_code == 0, result.output
    assert "one" in result.stdout
    assert "primary" not in result.stdout


@pytest.mark.parametrize(("spec", "message"), [
    ("{module}:not_a_bridge", "is a int, not a queuebridge.Bridge"),
    ("{module}:missing", "has no attribute 'missing'"),
    ("qb_no_such_module_here:bridge", "cannot import module"),
    ("no-colon", "module:attribute"),
])
def test_bad_app_is_a_one_line_error(app: ModuleType, spec: str, message: str) -> None:
    result = run("--app", spec.format(module=app.__name__), "check")
    assert_one_line_error(result, "--app", message)


# -- usage errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ("no-such-command",),
    ("--log-level", "LOUD", "check"),
    ("status", "--queues", "bad queue"),
    ("worker", "--concurrency", "0"),
    ("worker", "--pool", "forks"),
    ("enqueue",),
    ("enqueue", "t", "--delay", "-1"),
    ("enqueue", "t", "--retries", "-1"),
    ("enqueue", "t", "--id", "bad id"),
    ("enqueue", "t", "--queue", "bad queue"),
])
def test_usage_errors_exit_2(config: Path, args: tuple[str, ...]) -> None:
    result = run("--config", str(config), *args)
    assert result.exit_code == 2, result.output


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--args", "[1,", "not valid JSON"),
    ("--args", '{"a": 1}', "must be a JSON array"),
    ("--kwargs", "[1]", "must be a JSON object"),
    ("--kwargs", "{nope}", "not valid JSON"),
])
def test_bad_json_names_the_option(config: Path, option: str, value: str, message: str) -> None:
    result = run("--config", str(config), "enqueue", "app.record", option, value)
    assert result.exit_code == 2
    assert f"'{option}'" in result.stderr
    assert message in result.stderr


# -- backends ----------------------------------------------------------------------------------


def test_backends_lists_types_and_distributions(config: Path) -> None:
    result = run("backends")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["TYPE", "DISTRIBUTION", "CLASS", "CAPABILITIES"]
    memory = next(line for line in lines if line.startswith("memory "))
    assert memory.split()[:3] == ["memory", "queuebridge",
                                  "queuebridge.backends.memory.MemoryBackend"]


def test_disabled_plugin_is_not_listed() -> None:
    result = run("backends", env={"QUEUEBRIDGE_DISABLE_PLUGINS": "example"})
    assert result.exit_code == 0
    assert not any(line.startswith("example ") for line in result.stdout.splitlines())


# -- status ------------------------------------------------------------------------------------


def test_status_all_up(config: Path) -> None:
    result = run("--config", str(config), "status")
    assert result.exit_code == 0, result.output
    header, primary, _ = result.stdout.splitlines()[1:4]
    assert header.split() == ["BACKEND", "TYPE", "STATE", "SINCE", "LATENCY", "DOWNS", "high",
                              "default", "URL"]
    assert primary.split()[:3] == ["primary", "memory", "up"]
    assert "state: up (2 of 2 backends up)" in result.stdout
    assert SECRET not in result.output


def test_status_json(config: Path) -> None:
    result = run("--config", str(config), "status", "--json", "--queues", "a,b")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["state"] == "up"
    assert report["queues"] == ["a", "b"]
    assert [b["name"] for b in report["backends"]] == ["primary", "alternate"]
    assert report["backends"][0]["depths"] == {"a": 0, "b": 0}
    assert report["backends"][0]["url"] == "redis://user:***@redis.internal:6379/0"
    assert isinstance(report["backends"][0]["latency_ms"], float)
    assert SECRET not in result.output


def test_status_degraded_and_down(app: ModuleType) -> None:
    one, two = app.backends
    two.send(app.record.job(("x",), {}))
    one.break_()
    result = run("--app", f"{app.__name__}:bridge", "status", "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["state"] == "degraded"
    down, up = report["backends"]
    assert (down["state"], down["latency_ms"], down["depths"]) == ("down", None, {})
    assert "connection refused" in down["error"]
    assert up["depths"] == {"default": 1}
    two.break_()
    result = run("--app", f"{app.__name__}:bridge", "status")
    assert result.exit_code == 2, result.output
    assert "state: down (0 of 2 backends up)" in result.stdout
    assert "\none: connection refused\n" in result.stdout


# -- enqueue -----------------------------------------------------------------------------------


def test_enqueue_prints_id_and_backend(config: Path) -> None:
    result = run("--config", str(config), "enqueue", "app.record", "--args", "[1]",
                 "--id", "job-1")
    assert result.exit_code == 0, result.output
    assert result.stdout == "job-1 accepted by primary\n"


def test_enqueue_builds_the_envelope(app: ModuleType) -> None:
    result = run("--app", f"{app.__name__}:bridge", "enqueue", "any.task", "--args", '[1, "a"]',
                 "--kwargs", '{"k": [2]}', "--queue", "slow", "--retries", "3",
                 "--delay", "0.01")
    assert result.exit_code == 0, result.output
    job_id = result.stdout.split()[0]
    delivery = app.backends[0].reserve(["slow"], timeout=5.0)
    assert delivery is not None
    envelope = delivery.envelope
    assert envelope is not None
    assert (envelope.id, envelope.task, envelope.args, dict(envelope.kwargs)) == (
        job_id, "any.task", (1, "a"), {"k": [2]})
    assert (envelope.max_retries, envelope.queue) == (3, "slow")
    assert envelope.not_before is not None


def test_enqueue_failure_is_exit_1(app: ModuleType) -> None:
    for backend in app.backends:
        backend.break_()
    result = run("--app", f"{app.__name__}:bridge", "enqueue", "app.record")
    assert_one_line_error(result)


# -- worker ------------------------------------------------------------------------------------


def test_worker_burst_drains_the_app_backends(app: ModuleType) -> None:
    app.bridge.enqueue_many([app.record.job((i,), {}) for i in range(5)])
    app.backends[1].send(app.record.job(("on two",), {}))
    result = run("--app", f"{app.__name__}:bridge", "worker", "--burst", "--concurrency", "2",
                 "--queues", "default")
    assert result.exit_code == 0, result.output
    assert sorted(map(str, app.done)) == sorted([*map(str, range(5)), "on two"])
    assert all(backend.depth("default") == 0 for backend in app.backends)
    assert "INFO queuebridge.worker" in result.stderr


def test_worker_without_tasks_app_runs_from_config(config: Path) -> None:
    result = run("--config", str(config), "worker", "--burst")
    assert result.exit_code == 0, result.output
    assert "WARNING queuebridge.cli: the worker has no registered tasks" in result.stderr


def test_worker_library_errors_are_one_line(tmp_path: Path) -> None:
    file = tmp_path / "queuebridge.toml"
    file.write_text(CONFIG.replace(
        "[queuebridge.worker]", '[queuebridge.worker]\nstate = "nosuch://user:hunter2@host/0"'
    ))
    result = run("--config", str(file), "worker", "--burst")
    assert_one_line_error(result, "worker.state", "nosuch")
    assert "hunter2" not in result.output


def test_logging_handler_is_removed_after_the_command(config: Path) -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    assert run("--config", str(config), "--log-level", "debug", "check").exit_code == 0
    assert root.handlers == handlers
    assert root.level == level



def test_gather_status_reports_a_hung_backend_down_within_its_timeout() -> None:
    hung = MemoryBackend(BackendSettings(name="hung", type="memory", timeout=0.2,
                                         connect_timeout=0.2))
    fine = MemoryBackend(BackendSettings(name="fine", type="memory",
                                         url="redis://:secret-pw@h/0"))
    hung.hang()
    start = time.monotonic()
    report = gather_status([hung, fine], ["q"])
    assert time.monotonic() - start < 3.0
    assert report.overall is Overall.DEGRADED
    assert report.overall.exit_code == 1
    down, up = report.backends
    assert (down.up, down.error) == (False, "hung: timed out (broker hung)")
    assert (up.up, up.depths, up.url) == (True, {"q": 0}, "redis://:***@h/0")
    assert "secret-pw" not in json.dumps(report.to_dict())
    hung.heal()
