"""``queuebridge spool list`` and ``queuebridge spool drain``: the operator's view of the spool.

Both read ``[queuebridge.spool] path`` from the configuration (``--config``; the app's
Bridge is not used) and work whether or not the spool is enabled there, so rows left
behind after turning it off can still be seen and replayed. Neither creates the file.

``drain`` replays through a Bridge built from the same configuration, with its own spool
switched off: jobs go only to backends that accept them, never back into the spool.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from datetime import datetime
from typing import Protocol

import click

from queuebridge.bridge import Bridge
from queuebridge.errors import EnqueueError
from queuebridge.plugins import PluginManager
from queuebridge.settings import Settings
from queuebridge.spool import Spool, SpooledJob
from queuebridge.status import format_age

__all__ = ["spool"]


class _Options(Protocol):
    """What the ``queuebridge`` group hands its commands (``queuebridge.cli._Options``)."""

    def settings(self) -> Settings: ...

    def plugins(self) -> PluginManager: ...


@click.group()
def spool() -> None:
    """Inspect and replay the local spool (jobs kept while every backend was down)."""


@spool.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True,
              help="Show at most this many jobs, oldest first.")
@click.option("--json", "as_json", is_flag=True, help="Print the listing as JSON.")
@click.pass_obj
def list_command(options: _Options, limit: int, as_json: bool) -> None:
    """Show the jobs waiting in the spool, oldest first (arguments are not shown)."""
    settings = options.settings().spool
    count, jobs = 0, []
    if settings.path.exists():
        store = Spool(settings.path, settings.max_jobs)
        try:
            count, jobs = store.count(), store.list(limit)
        finally:
            store.close()
    if as_json:
        click.echo(json.dumps({"path": str(settings.path), "enabled": settings.enabled,
                               "count": count, "max_jobs": settings.max_jobs,
                               "jobs": [_job_dict(job) for job in jobs]}, indent=2))
        return
    if not count:
        click.echo(f"spool is empty ({settings.path})")
        return
    click.echo(_render_jobs(jobs, time.time()))
    click.echo(f"{count} job(s) in {settings.path} (max {settings.max_jobs}"
               f"{'' if settings.enabled else ', spool disabled in the config'})"
               f"{f'; showing the oldest {len(jobs)}' if len(jobs) < count else ''}")


@spool.command()
@click.option("--batch", type=click.IntRange(min=1), default=None,
              help="Jobs per batch (default: [queuebridge.spool] drain_batch).")
@click.pass_context
def drain(ctx: click.Context, batch: int | None) -> None:
    """Replay the spool through the live backends, oldest first.

    Exit 0 when the spool is empty afterwards; 1 when backends refused the jobs (they
    stay spooled) or rows remain (held by another process's drainer, or undecodable).
    """
    options: _Options = ctx.obj
    settings = options.settings()
    path = settings.spool.path
    if not path.exists():
        click.echo(f"spool is empty ({path})")
        return
    store = Spool(path, settings.spool.max_jobs)
    try:
        sent, error = _replay(store, settings, options.plugins(),
                              batch or settings.spool.drain_batch)
        left = store.count()
    finally:
        store.close()
    click.echo(f"replayed {sent} job(s) from {path}; {left} left")
    if error is not None:
        click.echo(f"error: backends refused the jobs, which stay spooled: {error}", err=True)
    elif left:
        click.echo("error: rows remain: another process is draining them, or they are "
                   "undecodable (see `queuebridge spool list`)", err=True)
    ctx.exit(1 if error is not None or left else 0)


def _replay(store: Spool, settings: Settings, plugins: PluginManager,
            batch: int) -> tuple[int, EnqueueError | None]:
    """Drain ``store`` with a progress bar on stderr; return (jobs sent, refusal)."""
    total = store.count()
    # No spool in this Bridge's router: a refused batch raises instead of being re-spooled.
    offline = replace(settings, spool=replace(settings.spool, enabled=False))
    sent = 0
    with Bridge.from_settings(offline, plugins=plugins) as bridge, click.progressbar(
            length=max(total, 1), label="draining", file=sys.stderr, show_pos=True) as bar:

        def progress(done: int, seen: int) -> None:
            nonlocal sent
            bar.length = max(bar.length or 0, seen)
            bar.update(done - sent)
            sent = done

        try:
            store.drain(bridge.router.send_many, batch, progress=progress)
        except EnqueueError as exc:
            return sent, exc
    return sent, None


def _render_jobs(jobs: list[SpooledJob], now: float) -> str:
    from queuebridge.cli import render_table  # the CLI imports this module: import late

    rows = [(job.seq, job.job_id, job.task, job.queue,
             datetime.fromtimestamp(job.spooled_at).isoformat(sep=" ", timespec="seconds"),
             format_age(now - job.spooled_at), _state(job)) for job in jobs]
    return render_table(("SEQ", "JOB ID", "TASK", "QUEUE", "SPOOLED AT", "AGE", "STATE"), rows)


def _state(job: SpooledJob) -> str:
    if job.claimed_by is None:
        return "waiting"
    if job.claimed_by == "undecodable":
        return "undecodable (kept aside)"
    return f"draining ({job.claimed_by})"


def _job_dict(job: SpooledJob) -> dict[str, object]:
    return {"seq": job.seq, "id": job.job_id, "task": job.task, "queue": job.queue,
            "spooled_at": job.spooled_at, "claimed_by": job.claimed_by}
