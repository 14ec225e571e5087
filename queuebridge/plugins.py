"""The plugin manager: discovery of backend types and delivery of events.

Plugins are loaded lazily, once per :class:`PluginManager`, from the built-ins and
from the ``queuebridge`` entry-point group. ``QUEUEBRIDGE_DISABLE_PLUGINS`` (a comma
separated list of entry-point names) blocks plugins before they are imported.
Hooks are only ever called through the typed methods here.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final, TypeVar, final

import pluggy

from queuebridge import hookspecs
from queuebridge.backend import Backend, Delivery
from queuebridge.envelope import Envelope
from queuebridge.errors import PluginError
from queuebridge.events import BackendDown, BackendUp, Failback, Failover, TransitionEvent

if TYPE_CHECKING:
    from queuebridge.state import StateStoreFactory

__all__ = ["BackendType", "PluginManager", "StateStoreType"]

log = logging.getLogger("queuebridge.plugins")
ENTRY_POINT_GROUP: Final = "queuebridge"
DISABLE_ENV: Final = "QUEUEBRIDGE_DISABLE_PLUGINS"
_BUILTINS: Final = ("queuebridge.backends.memory", "queuebridge.notify")


@dataclass(frozen=True, slots=True)
class BackendType:
    """A registered backend type and who provides it."""

    name: str
    backend_class: type[Backend]
    distribution: str
    """The distribution (``name version``) that registered it; ``queuebridge`` for built-ins."""


@dataclass(frozen=True, slots=True)
class StateStoreType:
    """A worker state store registered for a URL scheme, and who provides it."""

    scheme: str
    factory: StateStoreFactory
    distribution: str


_Registered = TypeVar("_Registered", BackendType, StateStoreType)


def _add_once(found: dict[str, _Registered], key: str, item: _Registered, what: str) -> None:
    """Add ``item`` under ``key``; a second registration of ``key`` is a conflict."""
    if key in found:
        raise PluginError(f"{what} {key!r} is registered twice: by "
                          f"{found[key].distribution} and by {item.distribution}")
    found[key] = item


@final
class PluginManager:
    """Wraps a :class:`pluggy.PluginManager` with typed methods.

    ``environ`` is read for ``QUEUEBRIDGE_DISABLE_PLUGINS``; ``entry_points=False``
    loads only built-ins and explicitly registered plugins (tests use this).
    """

    def __init__(
        self,
        *,
        environ: Mapping[str, str] | None = None,
        entry_points: bool = True,
        plugins: Iterable[object] = (),
    ) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._environ = os.environ if environ is None else environ
        self._entry_points = entry_points
        self._extra = list(plugins)
        self._loaded = False
        self._lock = threading.Lock()
        self._backend_types: dict[str, BackendType] | None = None
        self._implemented: dict[str, bool] = {}
        """Hook name -> whether any plugin implements it; cleared when plugins change,
        so a per-job hook nobody implements costs one dict lookup."""
        self._state_store_types: dict[str, StateStoreType] | None = None

    # -- loading ---------------------------------------------------------------------

    @property
    def disabled(self) -> frozenset[str]:
        """Entry-point names blocked by ``QUEUEBRIDGE_DISABLE_PLUGINS``."""
        raw = self._environ.get(DISABLE_ENV, "")
        return frozenset(part.strip() for part in raw.split(",") if part.strip())

    def load(self) -> None:
        """Load built-ins, explicit plugins and entry points. Idempotent."""
        with self._lock:
            if self._loaded:
                return
            for name in self.disabled:
                self._pm.set_blocked(name)
            for module_name in _BUILTINS:
                self._register_builtin(module_name)
            for plugin in self._extra:
                self._pm.register(plugin)
            if self._entry_points:
                try:
                    self._pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
                except Exception as exc:
                    raise PluginError(f"a queuebridge plugin failed to load: {exc}") from exc
            try:
                self._pm.check_pending()
            except pluggy.PluginValidationError as exc:
                raise PluginError(str(exc)) from exc
            self._loaded = True

    def _register_builtin(self, module_name: str) -> None:
        import importlib

        if module_name in self.disabled:
            return
        module: ModuleType = importlib.import_module(module_name)
        self._pm.register(module, name=module_name)

    def register(self, plugin: object, name: str | None = None) -> None:
        """Register a plugin object or module (after loading the others)."""
        self.load()
        with self._lock:
            try:
                self._pm.register(plugin, name=name)
            except ValueError as exc:
                raise PluginError(str(exc)) from exc
            self._implemented.clear()
        self._backend_types = None
        self._state_store_types = None

    def unregister(self, name: str) -> None:
        """Remove the plugin registered as ``name`` (for example the built-in logging
        notifier, ``queuebridge.notify``); nothing happens if there is none. Every
        Bridge sharing this manager is affected."""
        self.load()
        with self._lock:
            if self._pm.get_plugin(name) is not None:
                self._pm.unregister(name=name)
            self._implemented.clear()
        self._backend_types = None
        self._state_store_types = None

    def plugin_names(self) -> list[str]:
        """Names of every registered plugin."""
        self.load()
        return sorted(name for name, _ in self._pm.list_name_plugin() if name)

    # -- backend types -------------------------------------------------------------

    def backend_types(self) -> dict[str, BackendType]:
        """Every registered backend type, by name. Raises :class:`PluginError` on conflicts."""
        self.load()
        if self._backend_types is None:
            self._backend_types = self._collect_backend_types()
        return dict(self._backend_types)

    def _origins(self, hook: pluggy.HookCaller) -> list[tuple[Any, str]]:
        """Each implementation of ``hook`` with the distribution that provides it."""
        dists = {id(plugin): dist for plugin, dist in self._pm.list_plugin_distinfo()}
        found = []
        for impl in hook.get_hookimpls():
            dist = dists.get(id(impl.plugin))
            found.append((impl.function,
                          f"{dist.project_name} {dist.version}" if dist else "queuebridge"))
        return found

    def _collect_backend_types(self) -> dict[str, BackendType]:
        found: dict[str, BackendType] = {}
        for function, origin in self._origins(self._pm.hook.queuebridge_register_backends):

            def register(
                type_name: str, backend_class: type[Backend], origin: str = origin
            ) -> None:
                if not (isinstance(backend_class, type) and issubclass(backend_class, Backend)):
                    raise PluginError(
                        f"{origin}: backend type {type_name!r} must be a Backend subclass"
                    )
                _add_once(found, type_name, BackendType(type_name, backend_class, origin),
                          "backend type")

            function(register=register)
        return found

    # -- worker state stores -------------------------------------------------------

    def state_store_types(self) -> dict[str, StateStoreType]:
        """Every registered worker state store, by URL scheme (lower case).
        Raises :class:`PluginError` on conflicts."""
        self.load()
        if self._state_store_types is None:
            self._state_store_types = self._collect_state_store_types()
        return dict(self._state_store_types)

    def _collect_state_store_types(self) -> dict[str, StateStoreType]:
        found: dict[str, StateStoreType] = {}
        for function, origin in self._origins(self._pm.hook.queuebridge_register_state_stores):

            def register(scheme: str, factory: StateStoreFactory, origin: str = origin) -> None:
                if not callable(factory):
                    raise PluginError(f"{origin}: state store {scheme!r} must be callable")
                key = scheme.lower()
                _add_once(found, key, StateStoreType(key, factory, origin), "state store scheme")

            function(register=register)
        return found

    # -- events ----------------------------------------------------------------------

    def emit_transition(self, event: TransitionEvent) -> None:
        """Deliver a routing transition to every plugin."""
        hook = self._pm.hook
        if isinstance(event, BackendDown):
            self._safely(hook.queuebridge_backend_down, event=event)
        elif isinstance(event, BackendUp):
            self._safely(hook.queuebridge_backend_up, event=event)
        elif isinstance(event, Failover):
            self._safely(hook.queuebridge_failover, event=event)
        elif isinstance(event, Failback):
            self._safely(hook.queuebridge_failback, event=event)

    def job_enqueued(self, envelope: Envelope, backend: str) -> None:
        """A job was accepted by ``backend``."""
        self._safely(self._pm.hook.queuebridge_job_enqueued, envelope=envelope, backend=backend)

    def job_started(self, envelope: Envelope, backend: str) -> None:
        """A worker starts running a job."""
        self._safely(self._pm.hook.queuebridge_job_started, envelope=envelope, backend=backend)

    def job_succeeded(self, envelope: Envelope, backend: str, duration: float) -> None:
        """A job returned normally."""
        self._safely(
            self._pm.hook.queuebridge_job_succeeded,
            envelope=envelope, backend=backend, duration=duration,
        )

    def job_failed(self, envelope: Envelope, backend: str, error: str) -> None:
        """An attempt raised."""
        self._safely(
            self._pm.hook.queuebridge_job_failed, envelope=envelope, backend=backend, error=error
        )

    def job_retried(self, envelope: Envelope, backend: str, delay: float) -> None:
        """The next attempt was re-enqueued."""
        self._safely(
            self._pm.hook.queuebridge_job_retried, envelope=envelope, backend=backend, delay=delay
        )

    def job_dead_lettered(self, delivery: Delivery, reason: str) -> None:
        """A delivery was dead-lettered."""
        self._safely(
            self._pm.hook.queuebridge_job_dead_lettered, delivery=delivery, reason=reason
        )

    def job_duplicate(self, envelope: Envelope, backend: str) -> None:
        """A duplicate delivery was skipped."""
        self._safely(self._pm.hook.queuebridge_job_duplicate, envelope=envelope, backend=backend)

    def backend_created(self, backend: Backend) -> None:
        """A backend instance was built."""
        self._safely(self._pm.hook.queuebridge_backend_created, backend=backend)

    def _safely(self, hook: pluggy.HookCaller, **kwargs: Any) -> None:
        if not self._loaded:
            self.load()
        implemented = self._implemented.get(hook.name)
        if implemented is None:
            # Under the lock that register() holds: a stale "no" cannot be cached.
            with self._lock:
                implemented = self._implemented.setdefault(hook.name,
                                                           bool(hook.get_hookimpls()))
        if not implemented:
            return
        try:
            hook(**kwargs)
        except Exception:
            # A broken notifier must never break an enqueue or a worker.
            log.exception("queuebridge plugin hook %s raised", hook.name)
