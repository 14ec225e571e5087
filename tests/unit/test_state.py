"""Choosing the worker state store: SQLite paths, plugin-registered URL schemes, config."""

from __future__ import annotations

from pathlib import Path

import pytest

from queuebridge.config import load_settings
from queuebridge.dedup import Claim, SQLiteDedupStore
from queuebridge.errors import ConfigError, PluginError
from queuebridge.hookspecs import StateStoreRegistrar, hookimpl
from queuebridge.plugins import PluginManager
from queuebridge.settings import WorkerSettings
from queuebridge.state import CheckpointStore, WorkerState, open_worker_state, sqlite_worker_state


class FakeRedisStore:
    """A plugin registering a state store for ``fake://`` URLs (SQLite underneath)."""

    def __init__(self, tmp_path: Path, scheme: str = "fake") -> None:
        self.tmp_path = tmp_path
        self.scheme = scheme
        self.opened: list[str] = []

    def open(self, location: str) -> WorkerState:
        self.opened.append(location)
        state = sqlite_worker_state(self.tmp_path / "fake.sqlite3")
        return WorkerState(state.dedup, state.heartbeats, state.checkpoints, "fake://***")

    @hookimpl
    def queuebridge_register_state_stores(self, register: StateStoreRegistrar) -> None:
        register(self.scheme, self.open)


def manager(*plugins: object) -> PluginManager:
    return PluginManager(entry_points=False, plugins=plugins)


def test_a_path_opens_the_sqlite_stores(tmp_path: Path) -> None:
    state = open_worker_state(str(tmp_path / "worker.sqlite3"), manager())
    try:
        assert isinstance(state.dedup, SQLiteDedupStore)
        assert isinstance(state.checkpoints, CheckpointStore)
        assert state.dedup.claim("job", 1, "w1", 10.0) is Claim.CLAIMED
        state.checkpoints.save("job", {"step": 3})
        assert state.checkpoints.load("job") == {"step": 3}
        assert state.location == str(tmp_path / "worker.sqlite3")
    finally:
        state.close()
        state.close()


def test_a_registered_scheme_goes_to_its_plugin(tmp_path: Path) -> None:
    plugin = FakeRedisStore(tmp_path)
    state = open_worker_state("FAKE://user:secret@host/0", manager(plugin))
    state.close()
    assert plugin.opened == ["FAKE://user:secret@host/0"]
    assert "secret" not in state.location


def test_an_unknown_scheme_is_a_config_error_without_the_password(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        open_worker_state("nosuch://user:secret@host/0", manager(FakeRedisStore(tmp_path)))
    assert info.value.path == "worker.state"
    assert "secret" not in str(info.value)
    assert "fake://" in str(info.value)


def test_an_empty_location_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        open_worker_state("  ", manager())


def test_a_windows_style_path_is_not_a_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    monkeypatch.chdir(tmp_path)
    state = open_worker_state("c:state.sqlite3", manager())
    state.close()
    assert isinstance(state.dedup, SQLiteDedupStore)


def test_two_plugins_for_one_scheme_conflict(tmp_path: Path) -> None:
    pm = manager(FakeRedisStore(tmp_path), FakeRedisStore(tmp_path, scheme="Fake"))
    with pytest.raises(PluginError, match="registered twice"):
        pm.state_store_types()


def test_state_store_types_name_the_provider(tmp_path: Path) -> None:
    types = manager(FakeRedisStore(tmp_path)).state_store_types()
    assert list(types) == ["fake"]
    assert types["fake"].distribution == "queuebridge"


def test_config_reads_the_state_url_from_the_environment(tmp_path: Path) -> None:
    (tmp_path / "queuebridge.toml").write_text(
        '[[queuebridge.backends]]\nname = "primary"\ntype = "memory"\n\n'
        '[queuebridge.worker]\nstate = "${REDIS_URL}"\n')
    settings = load_settings(None, environ={"REDIS_URL": "redis://:pw@host:6379/1"},
                             plugins=manager(), cwd=tmp_path)
    assert settings.worker.state == "redis://:pw@host:6379/1"
    assert settings.worker.safe_state == "redis://:***@host:6379/1"
    assert "pw" not in repr(settings)


def test_the_default_state_is_a_local_sqlite_file() -> None:
    assert WorkerSettings().state == ".queuebridge/worker.sqlite3"
