"""Plugins: discovery through entry points (the installed ``queuebridge-example-plugin``
fixture), the disable list, conflicts, failing event hooks, and the contract suite run
on a third-party backend built from configuration."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from queuebridge import Bridge, Envelope, PluginError, hookimpl
from queuebridge.backend import Backend, BackendSettings
from queuebridge.backends.memory import MemoryBackend
from queuebridge.events import BackendDown
from queuebridge.hookspecs import BackendRegistrar
from queuebridge.plugins import PluginManager
from queuebridge.testing import BackendContract, MakeBackend

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "qb-example-plugin"


def example_plugin_installed() -> None:
    """The ./dev script installs tests/fixtures/*; say how when it was not."""
    types = PluginManager(environ={}).backend_types()
    if "example" not in types:
        pytest.fail(f"the example plugin is not installed: pip install {FIXTURE}")


def test_entry_point_plugin_is_discovered_with_its_distribution() -> None:
    example_plugin_installed()
    found = PluginManager(environ={}).backend_types()["example"]
    assert found.distribution.startswith("queuebridge-example-plugin ")
    assert found.backend_class.__module__ == "qb_example_plugin"
    assert issubclass(found.backend_class, Backend)


def test_disabled_plugin_is_not_loaded() -> None:
    example_plugin_installed()
    manager = PluginManager(environ={"QUEUEBRIDGE_DISABLE_PLUGINS": "nothing, example"})
    assert "example" in manager.disabled
    assert "example" not in manager.backend_types()
    assert "memory" in manager.backend_types()


def test_entry_points_off_loads_only_builtins() -> None:
    assert set(PluginManager(entry_points=False).backend_types()) == {"memory"}


class Registers:
    """A plugin registering one backend type under a given name."""

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name

    @hookimpl
    def queuebridge_register_backends(self, register: BackendRegistrar) -> None:
        register(self.type_name, MemoryBackend)


def test_two_plugins_registering_one_type_is_an_error() -> None:
    manager = PluginManager(entry_points=False, plugins=[Registers("dup"), Registers("dup")])
    with pytest.raises(PluginError, match="'dup' is registered twice"):
        manager.backend_types()


def test_a_plugin_cannot_take_a_builtin_type_name() -> None:
    manager = PluginManager(entry_points=False, plugins=[Registers("memory")])
    with pytest.raises(PluginError, match="registered twice"):
        manager.backend_types()


def test_registering_a_non_backend_is_an_error() -> None:
    class Bad:
        @hookimpl
        def queuebridge_register_backends(self, register: BackendRegistrar) -> None:
            register("bad", dict)  # type: ignore[arg-type]

    with pytest.raises(PluginError, match="must be a Backend subclass"):
        PluginManager(entry_points=False, plugins=[Bad()]).backend_types()


class Exploding:
    """Every event hook raises."""

    def __init__(self) -> None:
        self.calls = 0

    @hookimpl
    def queuebridge_backend_down(self, event: BackendDown) -> None:
        self.calls += 1
        raise RuntimeError("notifier is broken")

    @hookimpl
    def queuebridge_job_enqueued(self, envelope: Envelope, backend: str) -> None:
        self.calls += 1
        raise RuntimeError("notifier is broken")


def test_a_raising_event_hook_does_not_propagate(caplog: pytest.LogCaptureFixture) -> None:
    plugin = Exploding()
    manager = PluginManager(entry_points=False, plugins=[plugin])
    with caplog.at_level(logging.ERROR, logger="queuebridge.plugins"):
        manager.emit_transition(BackendDown(at=0.0, backend="primary", reason="refused"))
    assert plugin.calls == 1
    assert "queuebridge_backend_down" in caplog.text

    backend = MemoryBackend(BackendSettings(name="mem", type="memory"))
    with Bridge([backend], plugins=manager) as bridge:
        ref = bridge.submit([Envelope.create("tests.job")])[0]
    assert ref.backend == "mem"
    assert plugin.calls == 2


# -- the contract suite on the third-party backend, built from configuration ------------------


def _toml_value(value: object) -> str:
    return repr(value) if isinstance(value, int | float) else f'"{value}"'


class TestExampleBackendFromConfig(BackendContract):
    @pytest.fixture
    def make_backend(self, tmp_path: Path) -> Iterator[MakeBackend]:
        example_plugin_installed()
        url = f"example://{uuid.uuid4().hex}"
        bridges: list[Bridge] = []

        def make(**overrides: object) -> Backend:
            keys = {"name": "contract", "type": "example", "url": url, "label": "x",
                    **overrides}
            config = tmp_path / f"queuebridge-{len(bridges)}.toml"
            config.write_text(
                "[[queuebridge.backends]]\n"
                + "".join(f"{key} = {_toml_value(value)}\n" for key, value in keys.items())
                + "[queuebridge.spool]\nenabled = false\n"
            )
            bridges.append(Bridge.from_config(config, environ={}))
            return bridges[-1].backends["contract"]

        yield make
        for bridge in bridges:
            bridge.close()

    @pytest.fixture
    def unreachable_backend(self, make_backend: MakeBackend) -> Backend:
        # A broker of its own: breaking it must not break the other instances' broker.
        backend = make_backend(url=f"example://down-{uuid.uuid4().hex}", timeout=0.5,
                               connect_timeout=0.5)
        assert isinstance(backend, MemoryBackend)
        backend.break_()
        return backend

    def inject_malformed(self, backend: Backend, queue: str) -> None:
        assert isinstance(backend, MemoryBackend)
        backend.put_raw(queue, b"not json")
