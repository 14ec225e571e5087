"""Discovery through the entry point, URL dispatch and option validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from queuebridge_kombu import KombuBackend
from queuebridge_kombu.filesystem import FilesystemBackend
from queuebridge_kombu.options import filesystem_root, parse_options

from queuebridge.backend import BackendSettings
from queuebridge.errors import ConfigError
from queuebridge.plugins import PluginManager


def test_entry_point_registers_the_kombu_type() -> None:
    types = PluginManager(environ={}).backend_types()
    assert types["kombu"].backend_class is KombuBackend
    assert types["kombu"].distribution.startswith("queuebridge-kombu")


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("amqp://guest:guest@127.0.0.1:5672//", "AMQPBackend"),
        ("amqps://u:p@rabbit.example.com//", "AMQPBackend"),
        ("pyamqp://127.0.0.1//", "AMQPBackend"),
        ("amqp://h1//;amqp://h2//", "AMQPBackend"),
        ("filesystem://.queuebridge/broker", "FilesystemBackend"),
        ("", "FilesystemBackend"),
    ],
)
def test_url_scheme_picks_the_implementation(url: str, kind: str) -> None:
    backend = KombuBackend.from_settings(BackendSettings(name="b", type="kombu", url=url))
    assert type(backend).__name__ == kind
    assert isinstance(backend, KombuBackend)
    backend.close()


def test_unknown_scheme_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"backends\[b\]\.url"):
        KombuBackend.from_settings(BackendSettings(name="b", type="kombu", url="redis://x"))


def test_filesystem_roots() -> None:
    assert filesystem_root("filesystem://.queuebridge/broker") == Path(".queuebridge/broker")
    assert filesystem_root("filesystem:///var/lib/qb") == Path("/var/lib/qb")
    assert FilesystemBackend.capabilities.shared_between_hosts is False


@pytest.mark.parametrize(
    ("options", "path"),
    [
        ({"quorom": True}, "opts.quorom"),
        ({"quorum": "yes"}, "opts.quorum"),
        ({"prefetch": 0}, "opts.prefetch"),
        ({"heartbeat": -1}, "opts.heartbeat"),
        ({"ssl": {"ca_cert": "x"}}, "opts.ssl.ca_cert"),
        ({"ssl": {"cert_reqs": "maybe"}}, "opts.ssl.cert_reqs"),
    ],
)
def test_bad_options_name_their_path(options: dict[str, object], path: str) -> None:
    with pytest.raises(ConfigError) as info:
        KombuBackend.validate_options(options, "opts")
    assert info.value.path == path


def test_good_options_parse() -> None:
    opts = parse_options({"quorum": True, "prefetch": 50, "ssl": {"cert_reqs": "none"}}, "o")
    assert opts.quorum and opts.prefetch == 50
    assert opts.ssl_argument() == {"cert_reqs": 0}
