"""pytest plugin (entry point ``pytest11``): fixtures shared by backend test suites."""

from __future__ import annotations

import socket

import pytest

__all__ = ["free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def unused_tcp_port() -> int:
    """A free TCP port on 127.0.0.1 (nothing listens on it: connections are refused)."""
    return free_port()
