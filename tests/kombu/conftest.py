"""Fixtures shared by the kombu adapter tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from queuebridge.backend import Backend
from tests.kombu.amqp_helpers import delete_queues, queues_of


@pytest.fixture
def amqp_backends() -> Iterator[list[Backend]]:
    """Append the AMQP backends a test builds: afterwards they are closed and every
    queue they declared is deleted."""
    built: list[Backend] = []
    yield built
    for backend in built:
        backend.close()
    delete_queues(queues_of(built))
