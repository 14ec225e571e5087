"""``pool="processes"``: tasks run in long-lived child processes that can be killed.

One child per pool thread. The pool thread sends the job (task name, JSON arguments,
the job context) to its child and waits for the reply at most until the task's
``timeout``: past it the child is SIGKILLed and replaced, and the attempt fails with
``JobTimeout("hard timeout after N s")``. A child that dies mid-job (segfault,
``os._exit``) fails the attempt with :class:`ChildDied` and is replaced. Either way the
runner retries or dead-letters the job as usual.

Children are started with the ``spawn`` method: the parent has threads (consumers, the
pool, heartbeats), and forking a threaded process can copy a held lock into the child.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import queue
import threading
import time
from multiprocessing.process import BaseProcess
from typing import Any

from queuebridge.context import JobContext
from queuebridge.envelope import Envelope
from queuebridge.errors import ConfigError, JobTimeout, QueueBridgeError
from queuebridge.registry import Task
from queuebridge.worker.child import child_main
from queuebridge.worker.guard import CheckpointUse

__all__ = ["ChildDied", "ProcessPool", "RemoteError"]

log = logging.getLogger("queuebridge.worker")
START_TIMEOUT = 60.0
"""Seconds a child may take to import the app before the worker gives up on it."""
_CONTEXT_FIELDS = ("job_id", "attempt", "max_retries", "backend", "queue", "task", "deadline")


class ChildDied(QueueBridgeError):
    """The child process running the job exited or was killed mid-job."""


class RemoteError(Exception):
    """What a task raised in a child: its type name, message and formatted traceback."""

    def __init__(self, type_name: str, message: str, trace: str) -> None:
        super().__init__(message)
        self.type_name = type_name
        self.trace = trace


class Child:
    """One child process and the pipe to it."""

    def __init__(self, app: str, state: str | None) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, theirs = context.Pipe()
        self.process: BaseProcess = context.Process(
            target=child_main, args=(theirs, app, state), name="qb-child", daemon=True)
        self.process.start()
        theirs.close()
        self._ready = False

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Block until the child imported the app; raise if it could not."""
        if self._ready:
            return
        reply = self._receive(timeout)
        if reply is None:
            self.kill()
            raise QueueBridgeError(f"worker child did not start within {timeout:g} s")
        if not reply.get("ready"):
            raise ConfigError("worker.app", f"a worker child could not load the app: "
                                            f"{reply.get('error')}")
        self._ready = True

    def run(self, request: dict[str, Any], timeout: float | None) -> dict[str, Any] | None:
        """Send one job and wait for its reply; ``None`` when ``timeout`` passed first.
        Raises :class:`ChildDied` when the child is gone."""
        self.wait_ready()
        try:
            self.conn.send(json.dumps(request))
        except OSError as exc:
            raise self._died() from exc
        return self._receive(timeout)

    def _receive(self, timeout: float | None) -> dict[str, Any] | None:
        try:
            if not self.conn.poll(timeout):
                return None
            reply: dict[str, Any] = json.loads(self.conn.recv())
        except (EOFError, OSError) as exc:
            raise self._died() from exc
        return reply

    def _died(self) -> ChildDied:
        self.process.join(1.0)
        return ChildDied(f"worker child {self.process.pid} died while running the job "
                         f"(exit code {self.process.exitcode})")

    def kill(self) -> None:
        """SIGKILL the child and reap it."""
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5.0)
        self.conn.close()

    def stop(self, timeout: float) -> None:
        """Ask the child to exit; kill it if it has not within ``timeout``."""
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.process.join(timeout)
        self.kill()


class ProcessPool:
    """The children of one worker, handed to pool threads one at a time."""

    def __init__(self, app: str | None, state: str | None, size: int) -> None:
        if not app:
            raise ConfigError("worker.app", "pool = 'processes' needs the app as 'module:attr'")
        self._app = app
        self._state = state
        self._idle: queue.SimpleQueue[Child] = queue.SimpleQueue()
        self._all: set[Child] = set()
        self._lock = threading.Lock()
        children = [self._spawn() for _ in range(size)]
        for child in children:  # started together: they import the app in parallel
            child.wait_ready()
            self._idle.put(child)

    def _spawn(self) -> Child:
        child = Child(self._app, self._state)
        with self._lock:
            self._all.add(child)
        return child

    def _replace(self, child: Child) -> Child:
        child.kill()
        with self._lock:
            self._all.discard(child)
        return self._spawn()  # it imports the app while the job is being reported

    def invoke(self, task: Task[Any, Any], env: Envelope, ctx: JobContext
               ) -> tuple[BaseException | None, Any]:
        """Run ``task`` in a child; return what it raised (or why it died), or ``None``,
        and its JSON return value."""
        child = self._idle.get()
        request = {"task": task.name, "args": list(env.args), "kwargs": dict(env.kwargs),
                   "ctx": {name: getattr(ctx, name) for name in _CONTEXT_FIELDS}}
        try:
            child.wait_ready()
            reply = child.run(request, task.timeout)
            if reply is None:
                log.warning("worker: job %s (%s) passed its hard timeout of %g s; killing "
                            "child %s", env.id, task.name, task.timeout, child.process.pid)
                child = self._replace(child)
                return JobTimeout(f"hard timeout after {task.timeout:g} s"), None
        except QueueBridgeError as exc:  # died mid-job, or a replacement failed to start
            log.warning("worker: %s; starting another child", exc)
            child = self._replace(child)
            return exc, None
        finally:
            self._idle.put(child)
        if reply.get("checkpoints") and isinstance(ctx.checkpoints, CheckpointUse):
            ctx.checkpoints.used = True
        if reply["ok"]:
            return None, reply.get("result")
        return RemoteError(reply["type"], reply["message"], reply["traceback"]), None

    def close(self, timeout: float) -> None:
        """Stop every child: idle ones exit at once, busy ones are killed after
        ``timeout`` (the worker already waited its grace period for them)."""
        with self._lock:
            children = list(self._all)
            self._all.clear()
        deadline = time.monotonic() + timeout
        for child in children:
            child.stop(max(0.0, deadline - time.monotonic()))
