"""The child side of ``pool="processes"``: import the app once, then run tasks by name.

The parent sends one JSON request per job over a pipe and waits for one JSON reply;
``None`` asks the child to exit. The child never touches a broker: leases, acks,
retries and dedup stay in the parent. Only checkpoints are written here, straight to
the worker state store (the same SQLite file or Redis the parent uses), so a task's
``ctx.checkpoint()`` costs no round trip through the parent.
"""

from __future__ import annotations

import json
import signal
import traceback
from multiprocessing.connection import Connection
from typing import Any

from queuebridge.bridge import Bridge
from queuebridge.config import import_object
from queuebridge.context import JobContext, job_context
from queuebridge.errors import ConfigError
from queuebridge.state import WorkerState, open_worker_state
from queuebridge.worker.guard import CheckpointUse

__all__ = ["child_main"]


def child_main(conn: Connection, app: str, state: str | None) -> None:
    """Entry point of a child process (spawned, so it starts from a clean interpreter)."""
    # The parent decides when a job stops: a Ctrl-C or a SIGTERM sent to the whole
    # process group must not kill a job mid-way behind its back.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        bridge = import_object(app, "worker.app")
        if not isinstance(bridge, Bridge):
            raise ConfigError("worker.app", f"{app} is a {type(bridge).__name__}, not a Bridge")
        stores = open_worker_state(state, bridge.plugins) if state else None
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send(json.dumps({"ready": False, "error": f"{type(exc).__name__}: {exc}"}))
        return
    conn.send(json.dumps({"ready": True}))
    try:
        _serve(conn, bridge, stores)
    finally:
        if stores is not None:
            stores.close()


def _serve(conn: Connection, bridge: Bridge, stores: WorkerState | None) -> None:
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if request is None:
            return
        conn.send(json.dumps(_run(json.loads(request), bridge, stores)))


def _run(request: dict[str, Any], bridge: Bridge, stores: WorkerState | None
         ) -> dict[str, Any]:
    use = CheckpointUse(stores.checkpoints) if stores is not None else None
    ctx = JobContext(**request["ctx"], checkpoints=use)
    reply: dict[str, Any] = {"ok": True}
    try:
        func = bridge.registry.get(request["task"]).func
        with job_context(ctx):
            result = func(*request["args"], **request["kwargs"])
        reply["result"] = _json_or_none(result)
    except BaseException as exc:  # noqa: BLE001 - even SystemExit is a failed attempt
        reply = {"ok": False, "type": type(exc).__name__, "message": str(exc),
                 "traceback": "".join(traceback.format_exception(exc)).rstrip()}
    reply["checkpoints"] = use is not None and use.used
    return reply


def _json_or_none(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return None
    return value
