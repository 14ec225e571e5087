"""The config loader: discovery, ${VAR} expansion, validation, error paths, redaction."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import pytest

from queuebridge import Bridge, ConfigError, hookimpl
from queuebridge.backend import Backend
from queuebridge.backends.memory import MemoryBackend
from queuebridge.config import CONFIG_ENV, DEFAULT_BACKEND, import_object, load_settings
from queuebridge.hookspecs import BackendRegistrar
from queuebridge.plugins import PluginManager
from queuebridge.settings import RouterSettings, Settings, SpoolSettings, WorkerSettings

SECRET = "s3cr3t-Pa55"
MEMORY = '[[queuebridge.backends]]\nname = "primary"\ntype = "memory"\n'


class OptionBackend(MemoryBackend):
    """A backend with one adapter option, to see options reach ``validate_options``."""

    option_keys: ClassVar[frozenset[str]] = frozenset({"db", "label"})
    default_url: ClassVar[str] = "opt://localhost/0"


class FakeKombu:
    """Stands in for queuebridge-kombu so the embedded default can be tested without it."""

    @hookimpl
    def queuebridge_register_backends(self, register: BackendRegistrar) -> None:
        register("kombu", MemoryBackend)
        register("opt", OptionBackend)


def plugins(*extra: object) -> PluginManager:
    return PluginManager(entry_points=False, plugins=extra or (FakeKombu(),))


def load(cwd: Path, text: str | None = None, *, environ: Mapping[str, str] | None = None,
         path: Path | None = None, name: str = "queuebridge.toml",
         manager: PluginManager | None = None) -> Settings:
    if text is not None:
        (cwd / name).write_text(text)
    return load_settings(path, environ=environ or {}, plugins=manager or plugins(), cwd=cwd)


def load_error(cwd: Path, text: str, **kwargs: object) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(cwd, text, **kwargs)  # type: ignore[arg-type]
    return info.value


# -- a valid file ------------------------------------------------------------------------


def test_full_file_loads_into_frozen_settings(tmp_path: Path) -> None:
    settings = load(tmp_path, f"""
[queuebridge]
app = "myapp.tasks:bridge"

[[queuebridge.backends]]
name = "primary"
type = "opt"
url = "redis://:{SECRET}@localhost:6379/0"
timeout = 1
connect_timeout = 0.5
lease_timeout = 30
db = 3

[[queuebridge.backends]]
name = "alternate"
type = "memory"

[queuebridge.router]
deadline = 2
probe_jitter = 0

[queuebridge.spool]
enabled = false
path = "var/spool.sqlite3"

[queuebridge.worker]
queues = ["high", "default"]
concurrency = 4
pool = "processes"
""")
    primary, alternate = settings.backends
    assert (primary.name, primary.type, primary.timeout, primary.connect_timeout) == (
        "primary", "opt", 1.0, 0.5)
    assert isinstance(primary.timeout, float)
    assert primary.lease_timeout == 30.0
    assert dict(primary.options) == {"db": 3}
    assert alternate.url == "memory://", "a missing url takes the type's default_url"
    assert settings.app == "myapp.tasks:bridge"
    assert settings.router == RouterSettings(deadline=2.0, probe_jitter=0.0)
    assert settings.spool == SpoolSettings(enabled=False, path=Path("var/spool.sqlite3"))
    assert settings.worker == WorkerSettings(queues=("high", "default"), concurrency=4,
                                             pool="processes")
    assert settings.source == str(tmp_path / "queuebridge.toml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.router.deadline = 1  # type: ignore[misc]


@pytest.mark.parametrize("section", [RouterSettings, SpoolSettings, WorkerSettings])
def test_every_settings_field_is_a_key(tmp_path: Path, section: type) -> None:
    """The accepted keys come from the dataclasses: each field round-trips its default."""
    table = {RouterSettings: "router", SpoolSettings: "spool", WorkerSettings: "worker"}[section]
    lines = []
    for field in dataclasses.fields(section):
        value = field.default
        toml = (repr(str(value)) if isinstance(value, Path) else
                "true" if value is True else "false" if value is False else
                f"[{', '.join(repr(v) for v in value)}]" if isinstance(value, tuple) else
                repr(value))
        lines.append(f"{field.name} = {toml}".replace("'", '"'))
    settings = load(tmp_path, f"{MEMORY}[queuebridge.{table}]\n" + "\n".join(lines))
    assert getattr(settings, table) == section()


def test_end_to_end_bridge_from_config(tmp_path: Path) -> None:
    config = tmp_path / "qb.toml"
    config.write_text(MEMORY + '[[queuebridge.backends]]\nname = "b"\ntype = "memory"\n'
                      "[queuebridge.spool]\nenabled = false\n")
    with Bridge.from_config(config, environ={}, plugins=plugins()) as bridge:
        assert list(bridge.backends) == ["primary", "b"]
        assert bridge.settings.source == str(config)

        @bridge.task(name="tests.add")
        def add(a: int, b: int) -> int:
            return a + b

        ref = add.enqueue(1, 2)
        assert ref.backend == "primary"
        assert bridge.backends["primary"].depth("default") == 1


# -- discovery -----------------------------------------------------------------------------


def config_file(directory: Path, backend: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    file = directory / "queuebridge.toml"
    file.write_text(f'[[queuebridge.backends]]\nname = "{backend}"\ntype = "memory"\n')
    return file


def write_pyproject(directory: Path, backend: str) -> Path:
    file = directory / "pyproject.toml"
    file.write_text(f'[project]\nname = "x"\n\n[[tool.queuebridge.backends]]\n'
                    f'name = "{backend}"\ntype = "memory"\n')
    return file


def backend_name(settings: Settings) -> str:
    return settings.backends[0].name


def test_discovery_order(tmp_path: Path) -> None:
    explicit = config_file(tmp_path / "explicit", "explicit")
    named = config_file(tmp_path / "named", "named")
    config_file(tmp_path, "local")
    write_pyproject(tmp_path, "pyproject")
    environ = {CONFIG_ENV: str(named)}
    assert backend_name(load(tmp_path, path=explicit, environ=environ)) == "explicit"
    assert backend_name(load(tmp_path, environ=environ)) == "named"
    assert backend_name(load(tmp_path)) == "local"
    (tmp_path / "queuebridge.toml").unlink()
    settings = load(tmp_path)
    assert backend_name(settings) == "pyproject"
    assert settings.source == str(tmp_path / "pyproject.toml")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    settings = load(tmp_path)
    assert settings.backends == (DEFAULT_BACKEND,)
    assert settings.source == "<default>"


def test_relative_paths_resolve_against_cwd(tmp_path: Path) -> None:
    config_file(tmp_path / "conf", "relative")
    assert backend_name(load(tmp_path, path=Path("conf/queuebridge.toml"))) == "relative"
    environ = {CONFIG_ENV: "conf/queuebridge.toml"}
    assert backend_name(load(tmp_path, environ=environ)) == "relative"


def test_explicit_pyproject_reads_tool_table(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    file = write_pyproject(tmp_path / "sub", "tool")
    assert backend_name(load(tmp_path, path=file)) == "tool"


def test_missing_explicit_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="not found") as info:
        load(tmp_path, path=missing)
    assert info.value.source == str(missing)
    assert str(missing) in str(info.value)


def test_missing_file_from_environment_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "gone.toml"
    with pytest.raises(ConfigError) as info:
        load(tmp_path, environ={CONFIG_ENV: str(missing)})
    assert str(missing) in str(info.value)
    assert CONFIG_ENV in str(info.value)


def test_embedded_default_needs_kombu(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pip install queuebridge-kombu"):
        load(tmp_path, manager=PluginManager(entry_points=False))


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    error = load_error(tmp_path, "[queuebridge\n")
    assert "invalid TOML" in str(error)
    assert error.source == str(tmp_path / "queuebridge.toml")


def test_pyproject_errors_use_the_tool_prefix(tmp_path: Path) -> None:
    text = '[[tool.queuebridge.backends]]\nname = "a"\ntype = "memory"\ntimeout = -1\n'
    error = load_error(tmp_path, text, name="pyproject.toml")
    assert error.path == "tool.queuebridge.backends[0].timeout"
    assert str(error).startswith(f"{tmp_path / 'pyproject.toml'}: tool.queuebridge.backends[0]")


# -- validation errors: every one names the key's path -------------------------------------

BAD = [
    ("[queuebridge]\ncolour = 1\n" + MEMORY, "queuebridge.colour", "unknown key"),
    (MEMORY + "[queuebridge.alerts]\nurl = 'x'\n", "queuebridge.alerts", "unknown key"),
    (MEMORY + "[queuebridge.notify]\nurl = 'x'\n", "queuebridge.notify.url", "unknown key"),
    (MEMORY + "[queuebridge.notify]\nwebhook_url = 'ftp://h/x?token=s3cr3t'\n",
     "queuebridge.notify.webhook_url", "must be an http:// or https:// URL"),
    (MEMORY + "[queuebridge.notify]\nwebhook_headers = {'Bad Name' = 'x'}\n",
     "queuebridge.notify.webhook_headers.Bad Name", "not a valid HTTP header name"),
    (MEMORY + "[queuebridge.notify]\nwebhook_headers = {X-Token = 1}\n",
     "queuebridge.notify.webhook_headers.X-Token", "expected a string, got an integer"),
    (MEMORY + "[queuebridge.notify]\nwebhook_retries = -1\n",
     "queuebridge.notify.webhook_retries", "must be >= 0"),
    (MEMORY + "[other]\nx = 1\n", "other", "unknown table"),
    ("", "queuebridge", "missing [queuebridge]"),
    (MEMORY + "[queuebridge.router]\ndeadlin = 1\n", "queuebridge.router.deadlin", "unknown key"),
    (MEMORY + "[queuebridge.router]\ndeadline = '5'\n", "queuebridge.router.deadline",
     "expected a number, got a string"),
    (MEMORY + "[queuebridge.router]\nrecovery_probes = true\n",
     "queuebridge.router.recovery_probes", "expected an integer, got a boolean"),
    (MEMORY + "[queuebridge.router]\nrecovery_probes = 1.5\n",
     "queuebridge.router.recovery_probes", "expected an integer, got a float"),
    (MEMORY + "[queuebridge.router]\ndeadline = 0\n", "queuebridge.router.deadline", "> 0"),
    (MEMORY + "[queuebridge.router]\nprobe_jitter = -0.1\n", "queuebridge.router.probe_jitter",
     ">= 0"),
    (MEMORY + "[queuebridge.spool]\nenabled = 1\n", "queuebridge.spool.enabled", "boolean"),
    (MEMORY + "[queuebridge.spool]\npath = ''\n", "queuebridge.spool.path", "path"),
    (MEMORY + "[queuebridge.worker]\npool = 'forks'\n", "queuebridge.worker.pool", "threads"),
    (MEMORY + "[queuebridge.worker]\nqueues = []\n", "queuebridge.worker.queues", "at least"),
    (MEMORY + "[queuebridge.worker]\nqueues = 'a'\n", "queuebridge.worker.queues", "array"),
    (MEMORY + "[queuebridge.worker]\nqueues = ['a', 'b c']\n", "queuebridge.worker.queues[1]",
     "invalid queue name"),
    (MEMORY + "[queuebridge.worker]\nqueues = ['a', 2]\n", "queuebridge.worker.queues[1]",
     "expected a string"),
    (MEMORY + "[queuebridge.worker]\nconcurrency = 0\n", "queuebridge.worker.concurrency", "> 0"),
    (MEMORY + "[queuebridge]\nrouter = 1\n", "queuebridge.router", "expected a table"),
    (MEMORY + "[queuebridge]\napp = 'no_colon'\n", "queuebridge.app", "module:attribute"),
    (MEMORY + "[queuebridge]\napp = 'a b:c'\n", "queuebridge.app", "module:attribute"),
    (MEMORY + "[queuebridge]\napp = 3\n", "queuebridge.app", "expected a string"),
    ("[queuebridge]\nbackends = []\n", "queuebridge.backends", "at least one backend"),
    ("[queuebridge]\napp = 'a:b'\n", "queuebridge.backends", "at least one backend"),
    ("[queuebridge]\nbackends = 'memory'\n", "queuebridge.backends", "array of tables"),
    ("[queuebridge]\nbackends = [1]\n", "queuebridge.backends[0]", "expected a table"),
    (MEMORY + '[[queuebridge.backends]]\ntype = "memory"\n', "queuebridge.backends[1].name",
     "missing required key"),
    ('[[queuebridge.backends]]\nname = "a"\n', "queuebridge.backends[0].type",
     "missing required key"),
    (MEMORY + '[[queuebridge.backends]]\nname = "primary"\ntype = "memory"\n',
     "queuebridge.backends[1].name", "duplicate backend name 'primary'"),
    (MEMORY + '[[queuebridge.backends]]\nname = "b"\ntype = "redis-cluster"\n',
     "queuebridge.backends[1].type", "installed: kombu, memory, opt"),
    ('[[queuebridge.backends]]\nname = "spool"\ntype = "memory"\n',
     "queuebridge.backends[0].name", "reserved"),
    ('[[queuebridge.backends]]\nname = "a b"\ntype = "memory"\n',
     "queuebridge.backends[0].name", "1-64 characters"),
    ('[[queuebridge.backends]]\nname = 1\ntype = "memory"\n',
     "queuebridge.backends[0].name", "expected a string, got an integer"),
    (MEMORY + "timeout = -1\n", "queuebridge.backends[0].timeout", "> 0"),
    (MEMORY + "connect_timeout = 0\n", "queuebridge.backends[0].connect_timeout", "> 0"),
    (MEMORY + "lease_timeout = 0\n", "queuebridge.backends[0].lease_timeout", "> 0"),
    (MEMORY + "timeout = '2'\n", "queuebridge.backends[0].timeout", "expected a number"),
    (MEMORY + "url = 5\n", "queuebridge.backends[0].url", "expected a string"),
    (MEMORY + "colour = 'blue'\n", "queuebridge.backends[0].colour", "unknown option"),
    (MEMORY + "options = {}\n", "queuebridge.backends[0].options", "unknown option"),
    ('[[queuebridge.backends]]\nname = "o"\ntype = "opt"\nport = 1\n',
     "queuebridge.backends[0].port", "allowed: db, label"),
    (MEMORY + "url = '${UNSET_VARIABLE}'\n", "queuebridge.backends[0].url", "UNSET_VARIABLE"),
    (MEMORY + "url = 'redis://${BROKEN'\n", "queuebridge.backends[0].url", "malformed"),
    (MEMORY + "[queuebridge.worker]\nqueues = ['${NOPE}']\n", "queuebridge.worker.queues[0]",
     "NOPE is not set"),
]


@pytest.mark.parametrize(("text", "path", "message"), BAD, ids=[row[1] + ":" + row[2]
                                                                for row in BAD])
def test_error_names_the_key_path_and_file(tmp_path: Path, text: str, path: str,
                                           message: str) -> None:
    error = load_error(tmp_path, text)
    assert error.path == path
    assert message in error.reason
    file = str(tmp_path / "queuebridge.toml")
    assert error.source == file
    assert str(error) == f"{file}: {path}: {error.reason}"


def test_int_is_accepted_for_float_but_bool_is_not(tmp_path: Path) -> None:
    settings = load(tmp_path, MEMORY + "timeout = 3\n[queuebridge.worker]\ngrace_period = 0\n")
    assert settings.backends[0].timeout == 3.0
    assert settings.worker.grace_period == 0.0
    error = load_error(tmp_path, MEMORY + "timeout = true\n")
    assert error.path == "queuebridge.backends[0].timeout"


# -- ${VAR} --------------------------------------------------------------------------------


def test_variables_expand_from_the_given_environ(tmp_path: Path) -> None:
    text = MEMORY + (
        'url = "redis://:${PASSWORD}@${HOST:-localhost}:${PORT:-6379}/${DB:-0}"\n'
        '[queuebridge.worker]\nqueues = ["${QUEUE}", "${OTHER:-fallback}"]\n'
    )
    environ = {"PASSWORD": SECRET, "PORT": "6380", "DB": "", "QUEUE": "q1"}
    settings = load(tmp_path, text, environ=environ)
    assert settings.backends[0].url == f"redis://:{SECRET}@localhost:6380/0"
    assert settings.worker.queues == ("q1", "fallback")


def test_escaped_reference_stays_literal(tmp_path: Path) -> None:
    settings = load(tmp_path, MEMORY + 'url = "memory://$${NOT_A_VAR}"\n')
    assert settings.backends[0].url == "memory://${NOT_A_VAR}"


def test_set_but_empty_variable_without_default_is_empty(tmp_path: Path) -> None:
    settings = load(tmp_path, MEMORY + 'url = "memory://${EMPTY}"\n', environ={"EMPTY": ""})
    assert settings.backends[0].url == "memory://"


def test_unset_variable_names_key_and_variable_but_no_value(tmp_path: Path) -> None:
    text = MEMORY + 'url = "redis://:${PASSWORD}@${MISSING_HOST}/0"\n'
    error = load_error(tmp_path, text, environ={"PASSWORD": SECRET})
    assert error.path == "queuebridge.backends[0].url"
    assert "MISSING_HOST" in str(error)
    assert SECRET not in str(error)


# -- redaction -----------------------------------------------------------------------------


def test_password_never_in_errors_or_reprs(tmp_path: Path) -> None:
    url = f'url = "redis://user:${{PASSWORD}}@host:6379/0?password={SECRET}"\n'
    environ = {"PASSWORD": SECRET}
    settings = load(tmp_path, MEMORY + url, environ=environ)
    assert SECRET in settings.backends[0].url
    assert SECRET not in repr(settings)
    assert SECRET not in repr(settings.backends[0])
    assert "user:***@host" in settings.backends[0].safe_url
    for problem in ("timeout = -1\n", "colour = 1\n", "timeout = 'x'\n"):
        error = load_error(tmp_path, MEMORY + url + problem, environ=environ)
        assert SECRET not in str(error)
        assert SECRET not in repr(error)


# -- import_object ---------------------------------------------------------------------------


def test_import_object_resolves_dotted_attributes() -> None:
    assert import_object("queuebridge.config:DEFAULT_BACKEND.name", "--app") == "embedded"


@pytest.mark.parametrize(("spec", "message"), [
    ("queuebridge_no_such_module:app", "cannot import module"),
    ("queuebridge.config:missing", "has no attribute 'missing'"),
    ("not a spec", "module:attribute"),
])
def test_import_object_errors_name_the_option(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        import_object(spec, "--app")
    assert info.value.path == "--app"


def test_backend_subclass_without_options_rejects_all(tmp_path: Path) -> None:
    class Strict(MemoryBackend):
        pass

    class Plugin:
        @hookimpl
        def queuebridge_register_backends(self, register: BackendRegistrar) -> None:
            register("strict", Strict)

    manager = plugins(Plugin())
    error = load_error(tmp_path, '[[queuebridge.backends]]\nname="s"\ntype="strict"\nx=1\n',
                       manager=manager)
    assert error.path == "queuebridge.backends[0].x"
    assert "allowed: none" in error.reason
    assert issubclass(Strict, Backend)


def test_worker_table_reaches_the_worker_options(tmp_path: Path) -> None:
    from queuebridge.worker import WorkerOptions

    settings = load(tmp_path, MEMORY + "[queuebridge.worker]\nretry_backoff = 0.5\n"
                    "retry_backoff_max = 10\ndedup_ttl = 3600\nconcurrency = 16\n")
    options = WorkerOptions.from_settings(settings.worker, burst=True)
    assert (options.retry_backoff, options.retry_backoff_max, options.dedup_ttl,
            options.concurrency, options.burst) == (0.5, 10.0, 3600.0, 16, True)


def test_a_worker_key_that_does_nothing_is_not_accepted(tmp_path: Path) -> None:
    error = load_error(tmp_path, MEMORY + "[queuebridge.worker]\nprefetch = 4\n")
    assert error.path == "queuebridge.worker.prefetch"
    assert "unknown key" in str(error)
