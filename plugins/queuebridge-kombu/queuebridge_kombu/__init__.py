"""queuebridge backend type ``kombu``: RabbitMQ over AMQP, or the embedded filesystem broker.

Installed through the ``queuebridge`` entry-point group; importing this package
does nothing else (no connections, no Kombu import until a backend is built)::

    [[queuebridge.backends]]
    name = "alternate"
    type = "kombu"
    url  = "amqp://guest:guest@rabbit1//;amqp://guest:guest@rabbit2//"

    [[queuebridge.backends]]
    name = "local"
    type = "kombu"
    url  = "filesystem://.queuebridge/broker"
"""

from __future__ import annotations

from typing import cast

from queuebridge.backend import Backend
from queuebridge.hookspecs import BackendRegistrar, hookimpl
from queuebridge_kombu.base import KombuBackend
from queuebridge_kombu.options import KombuOptions

__all__ = ["KombuBackend", "KombuOptions", "queuebridge_register_backends"]


@hookimpl
def queuebridge_register_backends(register: BackendRegistrar) -> None:
    """Register the ``kombu`` backend type."""
    # KombuBackend is abstract on purpose: its from_settings returns the concrete
    # AMQP or filesystem implementation the URL asks for.
    register("kombu", cast("type[Backend]", KombuBackend))
