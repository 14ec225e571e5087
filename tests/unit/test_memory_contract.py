"""The memory backend passes the same contract suite as every real backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from queuebridge.backend import Backend, BackendSettings
from queuebridge.backends.memory import MemoryBackend
from queuebridge.testing import BackendContract, MakeBackend


class TestMemoryBackend(BackendContract):
    @pytest.fixture
    def make_backend(self) -> Iterator[MakeBackend]:
        built: list[MemoryBackend] = []

        def make(**overrides: object) -> Backend:
            settings = BackendSettings(name="mem", type="memory", **overrides)  # type: ignore[arg-type]
            backend = MemoryBackend(settings, shared_with=built[0] if built else None)
            built.append(backend)
            return backend

        yield make
        for backend in built:
            backend.close()

    @pytest.fixture
    def unreachable_backend(self) -> Backend:
        backend = MemoryBackend(
            BackendSettings(name="down", type="memory", timeout=0.5, connect_timeout=0.5)
        )
        backend.break_()
        return backend

    def inject_malformed(self, backend: Backend, queue: str) -> None:
        assert isinstance(backend, MemoryBackend)
        backend.put_raw(queue, b'{"v": 1, "id": "x"')


def test_hung_memory_backend_times_out() -> None:
    backend = MemoryBackend(BackendSettings(name="hung", type="memory", timeout=0.2))
    backend.hang()
    from queuebridge.errors import BackendUnavailable

    with pytest.raises(BackendUnavailable, match="hung"):
        backend.ping()
    backend.heal()
    assert backend.ping() >= 0
