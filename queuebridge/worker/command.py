"""``queuebridge workers``: list the workers registered in the worker state store."""

from __future__ import annotations

import json
import time
from contextlib import AbstractContextManager
from typing import Any, Protocol

import click

from queuebridge.bridge import Bridge
from queuebridge.heartbeat import WorkerInfo
from queuebridge.state import open_worker_state

__all__ = ["workers"]


class _Loaded(Protocol):
    """What the CLI group hands its commands: the app's Bridge (``--app``), or one
    built from the config."""

    def bridge(self) -> AbstractContextManager[Bridge]: ...


def worker_record(info: WorkerInfo, now: float) -> dict[str, Any]:
    """One worker as a JSON-friendly mapping (``last_heartbeat_age`` in seconds)."""
    return {"name": info.name, "host": info.host, "pid": info.pid,
            "backends": list(info.backends), "queues": list(info.queues),
            "current_jobs": list(info.current_jobs),
            "last_heartbeat_age": round(max(0.0, now - info.last_heartbeat), 1),
            "alive": info.alive}


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the workers as JSON.")
@click.pass_obj
def workers(obj: _Loaded, as_json: bool) -> None:
    """List workers from the worker state store ([queuebridge.worker] state): name,
    host, pid, backends, queues, jobs in flight, heartbeat age, alive or dead."""
    from queuebridge.cli import render_table  # the CLI imports this module first

    # The app's settings when --app names one: the state its workers write to.
    with obj.bridge() as bridge:
        settings = bridge.settings.worker
        state = open_worker_state(settings.state, bridge.plugins)
        try:
            found = state.heartbeats.workers()
        finally:
            state.close()
    now = time.time()
    records = [worker_record(info, now) for info in found]
    if as_json:
        click.echo(json.dumps({"state": settings.safe_state, "workers": records},
                              indent=2))
        return
    if not records:
        click.echo(f"no workers registered in {settings.safe_state}")
        return
    click.echo(render_table(
        ("NAME", "HOST", "PID", "BACKENDS", "QUEUES", "JOBS", "HEARTBEAT", "STATE"),
        [(r["name"], r["host"], r["pid"], ",".join(r["backends"]), ",".join(r["queues"]),
          len(r["current_jobs"]), f"{r['last_heartbeat_age']:.0f} s ago",
          "alive" if r["alive"] else "dead") for r in records]))
