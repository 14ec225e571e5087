"""The ``queuebridge`` command line: parse, build a Bridge, call the library, render.

Exit codes: 0 success, 1 failure (any :class:`QueueBridgeError`, printed as one
``error: ...`` line on stderr), 2 usage error. ``status`` also exits 1 when some
backends are down or all are but the spool takes jobs, and 2 when an enqueue would fail.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import IO, Any, TypeVar

import click

from queuebridge.bridge import Bridge
from queuebridge.config import import_object, load_settings
from queuebridge.drill.command import drill
from queuebridge.envelope import Envelope, validate_job_id, validate_queue_name
from queuebridge.errors import ConfigError, QueueBridgeError, SerializationError
from queuebridge.plugins import PluginManager
from queuebridge.redact import redact_text
from queuebridge.settings import Settings
from queuebridge.spool_command import spool
from queuebridge.status import (
    BackendStatus,
    Overall,
    StateTracker,
    StatusReport,
    bridge_status,
    format_age,
    watch_status,
)
from queuebridge.worker.command import workers

__all__ = ["cli", "main"]

log = logging.getLogger("queuebridge.cli")
T = TypeVar("T")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class _Failure(click.ClickException):
    """A library error shown as one ``error: ...`` line, exit status 1."""

    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except QueueBridgeError as exc:
            # One line, no traceback: these are the user's problems, not bugs.
            raise _Failure(" ".join(redact_text(str(exc)).split())) from exc


@dataclass(slots=True)
class _Options:
    """The global options, and what they build (loaded once per invocation)."""

    config: Path | None
    app: str | None
    _plugins: PluginManager | None = None
    _settings: Settings | None = None

    def plugins(self) -> PluginManager:
        if self._plugins is None:
            self._plugins = PluginManager(environ=os.environ)
        return self._plugins

    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config, environ=os.environ,
                                           plugins=self.plugins())
        return self._settings

    @contextlib.contextmanager
    def bridge(self, *, read_only: bool = False) -> Iterator[Bridge]:
        """The app's Bridge when an app is named (``--app`` or ``app``), else one built
        from the config. Only a Bridge built here is closed here: the app owns its own.
        ``read_only`` keeps a Bridge built here from replaying spooled jobs."""
        spec = self.app or self.settings().app
        if spec:
            yield _app_bridge(spec, "--app" if self.app else "queuebridge.app")
            return
        settings = self.settings()
        if read_only:
            settings = replace(settings, spool=replace(settings.spool, drain_on_start=False))
        with Bridge.from_settings(settings, plugins=self.plugins()) as bridge:
            yield bridge


def _app_bridge(spec: str, path: str) -> Bridge:
    found = import_object(spec, path)
    if not isinstance(found, Bridge):
        raise ConfigError(path, f"{spec} is a {type(found).__name__}, not a queuebridge.Bridge")
    return found


class _OneLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # Tracebacks too: one record, one line, so log shippers never split a record.
        return super().format(record).replace("\n", "\\n")


def _configure_logging(ctx: click.Context, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(level)

    def restore() -> None:
        root.removeHandler(handler)
        root.setLevel(previous)

    ctx.call_on_close(restore)


def _split_queues(ctx: click.Context, param: click.Parameter, value: str | None
                  ) -> tuple[str, ...] | None:
    if value is None:
        return None
    queues = tuple(part.strip() for part in value.split(",") if part.strip())
    try:
        return tuple(validate_queue_name(queue) for queue in queues) or None
    except SerializationError as exc:
        raise click.BadParameter(str(exc), ctx, param) from exc


def _json_option(kind: type[T], label: str) -> Callable[[click.Context, click.Parameter,
                                                          str | None], T | None]:
    def parse(ctx: click.Context, param: click.Parameter, value: str | None) -> T | None:
        if value is None:
            return None
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            raise click.BadParameter(f"not valid JSON: {exc}", ctx, param) from exc
        if not isinstance(parsed, kind):
            raise click.BadParameter(f"must be a JSON {label}", ctx, param)
        return parsed

    return parse


def _checked(validate: Callable[[str], str]) -> Callable[[click.Context, click.Parameter,
                                                          str | None], str | None]:
    def check(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        try:
            return None if value is None else validate(value)
        except SerializationError as exc:
            raise click.BadParameter(str(exc), ctx, param) from exc

    return check


def render_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned columns separated by two spaces, one line per row."""
    text = [[str(cell) for cell in row] for row in (headers, *rows)]
    widths = [max(len(row[i]) for row in text) for i in range(len(headers))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
                     .rstrip() for row in text)


# -- commands ------------------------------------------------------------------------------


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Config file (default: $QUEUEBRIDGE_CONFIG, ./queuebridge.toml, "
                   "[tool.queuebridge] in ./pyproject.toml, else the embedded default).")
@click.option("--app", metavar="MODULE:ATTR", default=None,
              help="The application's Bridge (overrides `app` in the config).")
@click.option("--log-level", type=click.Choice(_LOG_LEVELS, case_sensitive=False),
              default="INFO", show_default=True, help="Logging threshold (logs go to stderr).")
@click.version_option(package_name="queuebridge")
@click.pass_context
def cli(ctx: click.Context, config: Path | None, app: str | None, log_level: str) -> None:
    """Broker-neutral job queue: enqueue, run workers and inspect backends."""
    _configure_logging(ctx, log_level.upper())
    ctx.obj = _Options(config, app)


@cli.command()
@click.pass_obj
def check(options: _Options) -> None:
    """Validate the configuration and plugins; print the resolved backends."""
    with options.bridge(read_only=True) as bridge:
        settings = bridge.settings
        click.echo(f"config: {settings.source}")
        if settings.app or options.app:
            click.echo(f"app: {options.app or settings.app} "
                       f"({len(bridge.registry.names())} tasks)")
        click.echo(render_table(
            ("BACKEND", "TYPE", "URL", "TIMEOUT", "CONNECT", "LEASE"),
            [(b.name, b.type, b.safe_url, f"{b.timeout:g}s", f"{b.connect_timeout:g}s",
              f"{b.lease_timeout:g}s") for b in settings.backends],
        ))
        click.echo(f"ok: {len(settings.backends)} backend(s), in priority order")


@cli.command()
@click.pass_obj
def backends(options: _Options) -> None:
    """List the installed backend types and the distribution providing each."""
    rows = []
    for name, found in sorted(options.plugins().backend_types().items()):
        capabilities = [flag.name for flag in fields(found.backend_class.capabilities)
                        if getattr(found.backend_class.capabilities, flag.name) is True]
        cls = found.backend_class
        rows.append((name, found.distribution, f"{cls.__module__}.{cls.__qualname__}",
                     ",".join(capabilities) or "-"))
    click.echo(render_table(("TYPE", "DISTRIBUTION", "CLASS", "CAPABILITIES"), rows))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--queues", callback=_split_queues, metavar="A,B",
              help="Queues whose depth to show (default: the worker's queues).")
@click.option("--watch", type=click.FloatRange(min=0.1), is_flag=False, flag_value=2.0,
              default=None, metavar="[SECONDS]",
              help="Refresh every SECONDS (default 2) until Ctrl-C.")
@click.pass_context
def status(ctx: click.Context, as_json: bool, queues: tuple[str, ...] | None,
           watch: float | None) -> None:
    """Backends (state, since, latency, depths), spool and workers.

    Exit 0 all up, 1 degraded or spooling (still accepting jobs), 2 not accepting."""
    options: _Options = ctx.obj
    with options.bridge(read_only=True) as bridge:
        tracker = StateTracker(bridge.router.health())

        def produce() -> StatusReport:
            return bridge_status(bridge, queues or bridge.settings.worker.queues,
                                 tracker=tracker)

        if watch is None:
            report = produce()
            click.echo(json.dumps(report.to_dict(), indent=2) if as_json
                       else render_status(report))
        else:
            report = watch_status(produce, lambda shown: _show_again(shown, as_json), watch)
    ctx.exit(report.overall.exit_code)


def _show_again(report: StatusReport, as_json: bool) -> None:
    """One refresh of ``status --watch``: a JSON line, or the table on a cleared screen."""
    if as_json:
        click.echo(json.dumps(report.to_dict()))
        return
    if sys.stdout.isatty():
        click.clear()
    click.echo(render_status(report) + "\n")


def render_status(report: StatusReport) -> str:
    """The human form of a status report: a table, the errors, spool, workers, state."""
    headers = ("BACKEND", "TYPE", "STATE", "SINCE", "LATENCY", "DOWNS", *report.queues, "URL")
    rows = [(b.name, b.type, "up" if b.up else "down", _since(b, report.checked_at),
             "-" if b.latency_ms is None else f"{b.latency_ms:.1f} ms", b.down_count,
             *("-" if b.depths.get(q) is None else b.depths[q] for q in report.queues), b.url)
            for b in report.backends]
    lines = [f"config: {report.source}", render_table(headers, rows)]
    lines += [b.error for b in report.backends if b.error]
    if report.spool is not None:
        lines.append(report.spool.summary(report.checked_at))
    if report.workers is not None:
        lines.append(report.workers.summary())
    up = sum(1 for b in report.backends if b.up)
    where = "; new jobs go to the spool" if report.overall is Overall.SPOOLING else ""
    lines.append(f"state: {report.overall.label} ({up} of {len(report.backends)} "
                 f"backends up{where})")
    return "\n".join(lines)


def _since(backend: BackendStatus, now: float) -> str:
    # ">5m" when the state was found at the first look: it began earlier than that.
    if backend.since is None or (not backend.since_exact and now - backend.since < 1):
        return "-"
    return ("" if backend.since_exact else ">") + format_age(now - backend.since)


@cli.command()
@click.argument("task")
@click.option("--args", "args", callback=_json_option(list, "array"), metavar="JSON",
              help="Positional arguments, a JSON array.")
@click.option("--kwargs", "kwargs", callback=_json_option(dict, "object"), metavar="JSON",
              help="Keyword arguments, a JSON object.")
@click.option("--queue", default="default", show_default=True,
              callback=_checked(validate_queue_name))
@click.option("--delay", type=click.FloatRange(min=0), default=None, help="Seconds to wait.")
@click.option("--id", "job_id", callback=_checked(validate_job_id), help="Job id (default: new).")
@click.option("--retries", type=click.IntRange(min=0), default=0, show_default=True)
@click.pass_obj
def enqueue(options: _Options, *, task: str, args: list[Any] | None,
            kwargs: dict[str, Any] | None, queue: str, delay: float | None,
            job_id: str | None, retries: int) -> None:
    """Enqueue TASK (a registered task name) without importing the task code."""
    envelope = Envelope.create(task, args or (), kwargs, queue=queue, job_id=job_id,
                               max_retries=retries, delay=delay)
    with options.bridge() as bridge:
        (ref,) = bridge.submit([envelope])
    click.echo(f"{ref.id} accepted by {ref.backend}")


@cli.command()
@click.option("--queues", callback=_split_queues, metavar="A,B",
              help="Queues to consume, in priority order (default: [queuebridge.worker]).")
@click.option("--concurrency", type=click.IntRange(min=1), default=None)
@click.option("--burst", is_flag=True, help="Exit once every queue is empty.")
@click.option("--pool", type=click.Choice(("threads", "processes")), default=None)
@click.pass_context
def worker(ctx: click.Context, queues: tuple[str, ...] | None, concurrency: int | None,
           burst: bool, pool: str | None) -> None:
    """Run a worker for the app's tasks (--app, or app in the config)."""
    from queuebridge.worker import Worker, WorkerOptions

    options: _Options = ctx.obj
    # Process-pool children import the app themselves: hand them --app too.
    overrides = {"queues": queues, "concurrency": concurrency, "pool": pool,
                 "app": options.app}
    with options.bridge() as bridge:
        if not bridge.registry.names():
            log.warning("the worker has no registered tasks (no --app, or the app defines "
                        "none): every job it leases is dead-lettered as unknown")
        worker_options = WorkerOptions.from_settings(
            bridge.settings.worker, burst=burst,
            **{key: value for key, value in overrides.items() if value is not None},
        )
        code = Worker(bridge, worker_options).run()
    ctx.exit(code)


cli.add_command(drill)
cli.add_command(spool)
cli.add_command(workers)


def main() -> None:
    """Console-script entry point (``queuebridge``)."""
    # Like `python -m`, let --app name modules of the directory the command runs in.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    cli(prog_name="queuebridge")
