"""The hooks plugins implement.

Mark implementations with :data:`hookimpl`. Backend types are added through a
``register`` callback (never by returning values); events arrive as typed,
immutable objects so new fields never break an existing plugin. Event hooks must
be fast and must not raise: the core logs and swallows a failing event hook, so a
broken notifier can never block an enqueue.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import pluggy

if TYPE_CHECKING:
    from queuebridge.backend import Backend, Delivery
    from queuebridge.envelope import Envelope
    from queuebridge.events import BackendDown, BackendUp, Failback, Failover
    from queuebridge.state import StateStoreFactory

__all__ = ["BackendRegistrar", "StateStoreRegistrar", "hookimpl"]

PROJECT = "queuebridge"
_hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marker for plugin hook implementations: ``@hookimpl def queuebridge_...``."""


class BackendRegistrar(Protocol):
    """The callback handed to ``queuebridge_register_backends``."""

    def __call__(self, type_name: str, backend_class: type[Backend]) -> None:
        """Register ``backend_class`` under ``type_name`` (the config's ``type``)."""


@_hookspec
def queuebridge_register_backends(register: BackendRegistrar) -> None:
    """Add backend types: call ``register("rq", RQBackend)`` once per type.

    Two plugins registering the same type name is a :class:`~queuebridge.errors.PluginError`.
    """


class StateStoreRegistrar(Protocol):
    """The callback handed to ``queuebridge_register_state_stores``."""

    def __call__(self, scheme: str, factory: StateStoreFactory) -> None:
        """Register ``factory`` for ``[queuebridge.worker] state`` URLs of ``scheme``
        (``"redis"`` for ``redis://...``); it gets the whole URL and returns a
        :class:`~queuebridge.state.WorkerState` without connecting yet."""


@_hookspec
def queuebridge_register_state_stores(register: StateStoreRegistrar) -> None:
    """Add worker state stores: call ``register("redis", factory)`` once per URL scheme.

    Two plugins registering the same scheme is a :class:`~queuebridge.errors.PluginError`.
    """


@_hookspec
def queuebridge_backend_down(event: BackendDown) -> None:
    """A backend was marked down (once per transition)."""


@_hookspec
def queuebridge_backend_up(event: BackendUp) -> None:
    """A backend passed enough consecutive probes and is up again (once per transition)."""


@_hookspec
def queuebridge_failover(event: Failover) -> None:
    """New jobs moved away from the preferred backend (once per transition)."""


@_hookspec
def queuebridge_failback(event: Failback) -> None:
    """New jobs returned to a more preferred backend (once per transition)."""


@_hookspec
def queuebridge_job_enqueued(envelope: Envelope, backend: str) -> None:
    """A job was accepted by ``backend`` (a backend name, or ``"spool"``)."""


@_hookspec
def queuebridge_job_started(envelope: Envelope, backend: str) -> None:
    """A worker is about to run the job."""


@_hookspec
def queuebridge_job_succeeded(envelope: Envelope, backend: str, duration: float) -> None:
    """The job returned normally after ``duration`` seconds."""


@_hookspec
def queuebridge_job_failed(envelope: Envelope, backend: str, error: str) -> None:
    """An attempt raised; ``error`` is the formatted exception. A retry or dead-letter follows."""


@_hookspec
def queuebridge_job_retried(envelope: Envelope, backend: str, delay: float) -> None:
    """The next attempt (``envelope``) was re-enqueued on ``backend``, due in ``delay`` s."""


@_hookspec
def queuebridge_job_dead_lettered(delivery: Delivery, reason: str) -> None:
    """A job (possibly undecodable: ``delivery.envelope is None``) was dead-lettered."""


@_hookspec
def queuebridge_job_duplicate(envelope: Envelope, backend: str) -> None:
    """A delivery was skipped because its job id had already run (dedup)."""


@_hookspec
def queuebridge_backend_created(backend: Backend) -> None:
    """A Bridge built a backend instance (for plugins that instrument backends)."""
