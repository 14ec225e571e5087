"""The application-facing object: register tasks, enqueue jobs, close.

    bridge = Bridge.from_config()

    @bridge.task(retries=3)
    def fetch(url: str) -> None: ...

    fetch.enqueue("https://example.com")                  # -> JobRef(id=..., backend="primary")
    fetch.with_options(delay=30, queue="slow").enqueue("https://example.com")
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, overload

from queuebridge.backend import Backend
from queuebridge.envelope import Envelope
from queuebridge.errors import BackendError, ConfigError, TaskError
from queuebridge.plugins import PluginManager
from queuebridge.registry import BoundTask, JobOptions, Task, TaskRegistry, _Enqueuer
from queuebridge.router import Router
from queuebridge.settings import RouterSettings, Settings, SpoolSettings
from queuebridge.webhook import WebhookNotifier

__all__ = ["Bridge", "JobRef"]

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class JobRef:
    """What an enqueue returns: the job's id and where it went (a backend name or ``spool``)."""

    id: str
    backend: str
    task: str
    queue: str


class Bridge(_Enqueuer):
    """Tasks, backends and the router, for one application. Thread-safe.

    Build it from config (:meth:`from_config`) or in code from backend objects.
    Nothing connects until the first operation.
    """

    def __init__(
        self,
        backends: Sequence[Backend],
        *,
        router: RouterSettings | None = None,
        spool: SpoolSettings | None = None,
        plugins: PluginManager | None = None,
        settings: Settings | None = None,
    ) -> None:
        if not backends:
            raise ConfigError("queuebridge.backends", "at least one backend is required")
        names = [backend.name for backend in backends]
        if len(set(names)) != len(names):
            raise ConfigError("queuebridge.backends", f"duplicate backend names in {names}")
        self.plugins = plugins or PluginManager(entry_points=False)
        self.backends: dict[str, Backend] = {backend.name: backend for backend in backends}
        self.settings = settings or Settings(
            backends=tuple(backend.settings for backend in backends),
            router=router or RouterSettings(),
            spool=spool or SpoolSettings(enabled=False),
        )
        self.registry = TaskRegistry()
        self._notifier = self._set_up_notifications()
        self.router = Router(list(backends), self.settings.router, self.plugins,
                             spool=self.settings.spool)
        for backend in backends:
            self.plugins.backend_created(backend)

    @classmethod
    def from_settings(cls, settings: Settings, *, plugins: PluginManager | None = None) -> Bridge:
        """Build every configured backend through the registered backend types."""
        plugins = plugins or PluginManager()
        types = plugins.backend_types()
        backends = []
        for index, backend_settings in enumerate(settings.backends):
            backend_type = types.get(backend_settings.type)
            if backend_type is None:
                raise ConfigError(
                    f"queuebridge.backends[{index}].type",
                    f"unknown backend type {backend_settings.type!r} "
                    f"(installed: {', '.join(sorted(types)) or 'none'})",
                )
            backends.append(backend_type.backend_class.from_settings(backend_settings))
        return cls(backends, plugins=plugins, settings=settings)

    @classmethod
    def from_config(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        plugins: PluginManager | None = None,
    ) -> Bridge:
        """Load config (explicit path, ``$QUEUEBRIDGE_CONFIG``, ``./queuebridge.toml``,
        ``[tool.queuebridge]`` in ``./pyproject.toml``, else the embedded default) and
        build the Bridge. Raises :class:`ConfigError` naming the key's path."""
        from queuebridge.config import load_settings

        environ = os.environ if environ is None else environ
        plugins = plugins or PluginManager(environ=environ)
        settings = load_settings(
            Path(path) if path is not None else None, environ=environ, plugins=plugins
        )
        return cls.from_settings(settings, plugins=plugins)

    def _set_up_notifications(self) -> WebhookNotifier | None:
        """Apply ``[queuebridge.notify]`` to this Bridge's plugin manager."""
        notify = self.settings.notify
        if not notify.log_transitions:
            self.plugins.unregister("queuebridge.notify")
        notifier = WebhookNotifier.from_settings(notify)
        if notifier is not None:
            self.plugins.register(notifier, name=f"queuebridge.webhook.{id(self)}")
        return notifier

    # -- tasks -----------------------------------------------------------------------

    @overload
    def task(self, func: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self, func: None = None, /, *, name: str | None = None, queue: str = "default",
        retries: int = 0, timeout: float | None = None,
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def task(
        self,
        func: Callable[P, R] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str = "default",
        retries: int = 0,
        timeout: float | None = None,
    ) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
        """Register a task: ``@bridge.task`` or ``@bridge.task(name=..., queue=...,
        retries=..., timeout=...)``. The name defaults to ``module.qualname``."""

        def register(fn: Callable[P, R]) -> Task[P, R]:
            if "<locals>" in fn.__qualname__ and name is None:
                raise TaskError(
                    f"{fn.__qualname__}: a nested function needs an explicit name= "
                    "(its qualname is not stable)"
                )
            task: Task[P, R] = Task(
                fn, name=name or f"{fn.__module__}.{fn.__qualname__}", queue=queue,
                retries=retries, timeout=timeout, bridge=self,
            )
            self.registry.add(task)
            return task

        return register(func) if func is not None else register

    # -- enqueue ---------------------------------------------------------------------

    def enqueue(self, task_name: str, /, *args: Any, **kwargs: Any) -> JobRef:
        """Enqueue a registered task by name. Raises :class:`UnknownTaskError`."""
        return self._submit([self.registry.get(task_name).job(args, kwargs)])[0]

    def with_options(self, task_name: str, /, **options: Any) -> BoundTask[..., Any]:
        """Job options for an enqueue by name:
        ``bridge.with_options("app.fetch", delay=30).enqueue(url)``."""
        return BoundTask(self.registry.get(task_name), JobOptions(**options))

    def enqueue_many(self, jobs: Iterable[Envelope]) -> list[JobRef]:
        """Send prepared jobs (``task.job(args, kwargs, options)``) in batches: the fast path."""
        envelopes = list(jobs)
        for envelope in envelopes:
            self.registry.get(envelope.task)
        return self.submit(envelopes)

    def submit(self, envelopes: Sequence[Envelope]) -> list[JobRef]:
        """Route prepared envelopes without checking the task registry: for producers that
        do not import the task code (the CLI, another service). Workers still refuse names
        they have not registered."""
        return self._submit(envelopes)

    def _submit(self, envelopes: Sequence[Envelope]) -> list[JobRef]:
        placed = self.router.send_many(envelopes)
        return [JobRef(env.id, backend, env.task, env.queue)
                for env, backend in zip(envelopes, placed, strict=True)]

    # -- lifecycle -------------------------------------------------------------------

    # -- results ---------------------------------------------------------------------

    def job_status(self, job: JobRef | str) -> str | None:
        """Where a job stands (``queued``, ``started``, ``finished``, ``failed`` ...) on a
        backend that keeps results (``capabilities.results``); ``None`` when none knows
        it. Raises ``BackendUnavailable``."""
        for backend in self._result_backends(job):
            status = backend.job_status(job if isinstance(job, str) else job.id)
            if status is not None:
                return status
        return None

    def job_result(self, job: JobRef | str) -> Any:
        """The JSON return value of a finished job, where a backend keeps results
        (``capabilities.results``); ``None`` otherwise. Raises ``BackendUnavailable``."""
        for backend in self._result_backends(job):
            value = backend.job_result(job if isinstance(job, str) else job.id)
            if value is not None:
                return value
        return None

    def _result_backends(self, job: JobRef | str) -> list[Backend]:
        """Backends keeping results, the one that accepted ``job`` first (a retry may
        have moved it to another)."""
        first = None if isinstance(job, str) else self.backends.get(job.backend)
        ordered = [first] if first is not None else []
        ordered += [b for b in self.backends.values() if b is not first]
        return [backend for backend in ordered if backend.capabilities.results]

    def close(self) -> None:
        """Stop the router's monitor, close every backend, then deliver pending webhook
        notifications (waiting at most about one webhook timeout). Idempotent.

        Every backend is closed even if one fails; the first failure is raised after."""
        self.router.close()
        failure: BackendError | None = None
        for backend in self.backends.values():
            try:
                backend.close()
            except BackendError as exc:
                failure = failure or exc
        if self._notifier is not None:
            # Off a manager other Bridges may share, once nothing is left to say.
            self._notifier.close()
            self.plugins.unregister(f"queuebridge.webhook.{id(self)}")
        if failure is not None:
            raise failure

    def __enter__(self) -> Bridge:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Bridge backends={list(self.backends)} tasks={len(self.registry.names())}>"
