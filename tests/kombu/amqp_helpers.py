"""Shared helpers for the AMQP tests: building backends, deleting their queues."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import kombu
from queuebridge_kombu import KombuBackend
from queuebridge_kombu.amqp import AMQPBackend

from queuebridge.backend import Backend, BackendSettings

RABBIT_URL = "amqp://guest:guest@127.0.0.1:5672//"


def amqp_backend(url: str = RABBIT_URL, **overrides: Any) -> Backend:
    """An AMQP backend built through the ``kombu`` type."""
    settings = BackendSettings(name="rabbit", type="kombu", url=url, **overrides)
    return KombuBackend.from_settings(settings)


def delete_queues(names: Iterable[str]) -> None:
    """Delete test queues with a separate connection (bounded by timeouts)."""
    names = sorted(set(names))
    if not names:
        return
    with kombu.Connection(RABBIT_URL, connect_timeout=2,
                          transport_options={"read_timeout": 2, "write_timeout": 2}) as conn:
        channel = conn.channel()
        for name in names:
            channel.queue_delete(name)


def queues_of(backends: Iterable[Backend]) -> set[str]:
    """Every queue the given AMQP backends declared."""
    found: set[str] = set()
    for backend in backends:
        if isinstance(backend, AMQPBackend):
            found |= backend.declared_queues()
    return found
