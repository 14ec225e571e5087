"""The filesystem broker passes the core's backend contract suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from queuebridge_kombu import KombuBackend
from queuebridge_kombu.filesystem import FilesystemBackend
from queuebridge_kombu.fsqueue import job_file_name

from queuebridge.backend import Backend, BackendSettings
from queuebridge.testing import BackendContract, MakeBackend


def filesystem_backend(root: Path, **overrides: object) -> Backend:
    """A filesystem backend on ``root`` built through the ``kombu`` type."""
    settings = BackendSettings(name="fs", type="kombu", url=f"filesystem://{root}",
                               **overrides)  # type: ignore[arg-type]
    return KombuBackend.from_settings(settings)


class TestFilesystemContract(BackendContract):
    @pytest.fixture
    def make_backend(self, tmp_path: Path) -> Iterator[MakeBackend]:
        built: list[Backend] = []

        def make(**overrides: object) -> Backend:
            backend = filesystem_backend(tmp_path / "broker", **overrides)
            built.append(backend)
            return backend

        yield make
        for backend in built:
            backend.close()

    @pytest.fixture
    def unreachable_backend(self, tmp_path: Path) -> Backend:
        blocker = tmp_path / "not-a-dir"
        blocker.write_text("a file where the broker folder should be")
        return filesystem_backend(blocker / "broker", timeout=0.5, connect_timeout=0.5)

    def inject_malformed(self, backend: Backend, queue: str) -> None:
        assert isinstance(backend, FilesystemBackend)
        ready = backend.root / "queues" / queue / "ready"
        ready.mkdir(parents=True, exist_ok=True)
        (ready / job_file_name(0.0, "broken")).write_bytes(b'{"v": 1, "id": "x"')
