"""Fixtures for the real servers every suite shares.

A missing server fails the run in CI (``CI=true``) and skips locally.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from queuebridge.drill.servers import RedisProcess
from queuebridge.errors import QueueBridgeError
from tests.rabbit_server import RabbitProcess, find_rabbitmq_server


def server_missing(what: str) -> None:
    """Fail in CI, skip elsewhere."""
    message = f"{what} is not available"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI=true: a real-server test may not skip)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def rabbitmq() -> None:
    """The shared RabbitMQ on 127.0.0.1:5672 (guest/guest) answers."""
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=2) as sock:
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            if not sock.recv(8):
                server_missing("RabbitMQ on 127.0.0.1:5672")
    except OSError:
        server_missing("RabbitMQ on 127.0.0.1:5672")


@pytest.fixture(scope="module")
def private_rabbit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitProcess]:
    """A private RabbitMQ node this module may kill and restart (about 7 s to boot)."""
    binary = find_rabbitmq_server()
    if binary is None:
        server_missing("rabbitmq-server (for a private node)")
    assert binary is not None
    node = RabbitProcess(tmp_path_factory.mktemp("rabbit"), binary)
    node.start()
    yield node
    node.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProcess]:
    """A private redis-server (AOF, fsync always) this test may kill and restart."""
    try:
        server = RedisProcess(tmp_path / "redis")
        server.start()
    except QueueBridgeError as exc:
        server_missing(f"redis-server ({exc})")
    yield server
    server.stop()
