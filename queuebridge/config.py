"""Finding, parsing and validating the configuration (TOML) into :class:`Settings`.

Discovery, first match wins:

1. the explicit path (``--config``, ``Bridge.from_config(path)``); a missing file is an error;
2. the file named by ``$QUEUEBRIDGE_CONFIG``; a missing file is an error;
3. ``./queuebridge.toml``;
4. the ``[tool.queuebridge]`` table of ``./pyproject.toml`` (only if that table exists);
5. the embedded default: one ``kombu`` backend on ``filesystem://.queuebridge/broker``.

Everything is validated here, once, into the frozen objects of :mod:`queuebridge.settings`.
The keys and types accepted in ``[queuebridge.router]``, ``[queuebridge.spool]``,
``[queuebridge.worker]`` and ``[queuebridge.notify]`` are read from those dataclasses,
so a new settings field is a new config key with nothing else to update. Every problem
raises :class:`ConfigError` whose ``path`` is the key's path
(``queuebridge.backends[1].url``, or ``tool.queuebridge...`` in ``pyproject.toml``) and
whose ``source`` is the file.
``${VAR}`` and ``${VAR:-default}`` in string values expand from the ``environ`` mapping;
error messages name the variable, never a value, and URLs only appear redacted.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import tomllib
import types
import typing
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from queuebridge.backend import BackendSettings
from queuebridge.envelope import validate_queue_name
from queuebridge.errors import ConfigError, SerializationError
from queuebridge.plugins import BackendType, PluginManager
from queuebridge.settings import Settings

__all__ = ["CONFIG_ENV", "DEFAULT_BACKEND", "check_app_spec", "import_object", "load_settings"]

CONFIG_ENV: Final = "QUEUEBRIDGE_CONFIG"
DEFAULT_BACKEND: Final = BackendSettings(
    name="embedded", type="kombu", url="filesystem://.queuebridge/broker"
)
"""The backend used when no configuration file is found."""

_APP_RE: Final = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_VAR_RE: Final = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{")
_RESERVED_NAMES: Final = frozenset({"spool"})
"""``spool`` names the local buffer in a ``JobRef``; a backend may not take it."""
_ZERO_ALLOWED: Final = frozenset({"probe_jitter", "grace_period", "webhook_retries",
                                  "retry_backoff", "retry_backoff_max"})
"""Numeric settings where 0 means something ("no jitter"); every other number must be > 0."""
_CHOICES: Final[Mapping[str, tuple[str, ...]]] = {"pool": ("threads", "processes")}
_HEADER_NAME_RE: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""An HTTP header name (RFC 9110 token)."""
_TOML_TYPES: Final[Mapping[type, str]] = {
    bool: "a boolean", int: "an integer", float: "a float", str: "a string",
    list: "an array", dict: "a table",
}


@dataclass(frozen=True, slots=True)
class _Document:
    """The ``[queuebridge]`` table of one file, and the key path it lives at."""

    file: Path
    prefix: str
    table: object


def load_settings(
    path: Path | None,
    *,
    environ: Mapping[str, str],
    plugins: PluginManager,
    cwd: Path | None = None,
) -> Settings:
    """Find, parse and validate the configuration (see the module docstring for the order).

    ``cwd`` is where ``queuebridge.toml`` and ``pyproject.toml`` are looked for and what
    relative paths are resolved against (default: the working directory). Raises
    :class:`ConfigError` naming the key's path and the file; :class:`PluginError` when
    the installed plugins conflict.
    """
    cwd = Path.cwd() if cwd is None else cwd
    document = _locate(path, environ, cwd)
    backend_types = plugins.backend_types()
    if document is None:
        return _embedded_default(backend_types)
    try:
        return _parse(document, environ, backend_types)
    except ConfigError as exc:
        # Re-raised only to add the file; chain to the original cause, not to the copy.
        raise ConfigError(exc.path, exc.reason, source=str(document.file)) from exc.__cause__


def check_app_spec(spec: str, path: str) -> str:
    """Return ``spec`` if it reads ``module:attribute``, else raise :class:`ConfigError`."""
    if not _APP_RE.fullmatch(spec):
        raise ConfigError(path, "must be 'module:attribute' (for example 'myapp.tasks:bridge')")
    return spec


def import_object(spec: str, path: str) -> object:
    """Import ``module:attribute`` (the attribute may be dotted) and return the object.

    Raises :class:`ConfigError` at ``path`` when the spec is malformed, the module cannot
    be imported or the attribute does not exist. Errors raised by the module's own code
    while it is imported (other than ``ImportError``) propagate unchanged.
    """
    module_name, _, attribute = check_app_spec(spec, path).partition(":")
    try:
        found: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(path, f"cannot import module {module_name!r}: {exc}") from exc
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError as exc:
            raise ConfigError(path, f"module {module_name!r} has no attribute {attribute!r}"
                              ) from exc
    return found


# -- discovery ---------------------------------------------------------------------------


def _locate(path: Path | None, environ: Mapping[str, str], cwd: Path) -> _Document | None:
    if path is not None:
        return _document(cwd / path, "")
    named = environ.get(CONFIG_ENV, "")
    if named:
        return _document(cwd / named, f" (named by ${CONFIG_ENV})")
    local = cwd / "queuebridge.toml"
    if local.is_file():
        return _document(local, "")
    pyproject = cwd / "pyproject.toml"
    if pyproject.is_file():
        tool = _read_toml(pyproject, "").get("tool")
        if isinstance(tool, dict) and "queuebridge" in tool:
            return _Document(pyproject, "tool.queuebridge", tool["queuebridge"])
    return None


def _document(file: Path, origin: str) -> _Document:
    data = _read_toml(file, origin)
    if file.name == "pyproject.toml":
        tool = data.get("tool")
        if not isinstance(tool, dict) or "queuebridge" not in tool:
            raise ConfigError("tool.queuebridge", "missing table", source=str(file))
        return _Document(file, "tool.queuebridge", tool["queuebridge"])
    for key in data:
        if key != "queuebridge":
            raise ConfigError(key, "unknown table (allowed: queuebridge)", source=str(file))
    if "queuebridge" not in data:
        raise ConfigError("queuebridge", "missing [queuebridge] table", source=str(file))
    return _Document(file, "queuebridge", data["queuebridge"])


def _read_toml(file: Path, origin: str) -> dict[str, Any]:
    source = str(file)
    try:
        raw = file.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError("", f"config file not found{origin}", source=source) from exc
    except OSError as exc:
        raise ConfigError("", f"cannot read config file{origin}: {exc.strerror}",
                          source=source) from exc
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError("", "config file is not valid UTF-8", source=source) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"invalid TOML: {exc}", source=source) from exc


def _embedded_default(backend_types: Mapping[str, BackendType]) -> Settings:
    if DEFAULT_BACKEND.type not in backend_types:
        raise ConfigError(
            "queuebridge.backends",
            f"no configuration found (--config, ${CONFIG_ENV}, ./queuebridge.toml or "
            "[tool.queuebridge] in ./pyproject.toml) and the embedded default needs the "
            "'kombu' backend type: pip install queuebridge-kombu",
            source="<default>",
        )
    return Settings(backends=(DEFAULT_BACKEND,), source="<default>")


# -- ${VAR} expansion ----------------------------------------------------------------


def _expand(value: object, path: str, environ: Mapping[str, str]) -> object:
    if isinstance(value, str):
        return _expand_string(value, path, environ)
    if isinstance(value, dict):
        return {key: _expand(item, f"{path}.{key}", environ) for key, item in value.items()}
    if isinstance(value, list):
        return [_expand(item, f"{path}[{index}]", environ) for index, item in enumerate(value)]
    return value


def _expand_string(text: str, path: str, environ: Mapping[str, str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if match.group(0) == "$${":
            return "${"
        if name is None:
            raise ConfigError(path, "malformed variable reference: use ${NAME} or "
                                    "${NAME:-default} ($${ for a literal ${)")
        value = environ.get(name, "")
        if not value and default is not None:
            return default
        if name not in environ:
            raise ConfigError(path, f"environment variable {name} is not set "
                                    f"(use ${{{name}:-default}} to give a default)")
        return value

    return _VAR_RE.sub(substitute, text)


# -- validation ------------------------------------------------------------------------


def _parse(document: _Document, environ: Mapping[str, str],
           backend_types: Mapping[str, BackendType]) -> Settings:
    prefix = document.prefix
    table = _table(_expand(document.table, prefix, environ), prefix)
    _reject_unknown(table, [name for name in _field_names(Settings) if name != "source"], prefix)
    values = _convert_fields(Settings, table, prefix, skip=frozenset({"backends", "source"}))
    if values.get("app") is not None:
        check_app_spec(values["app"], f"{prefix}.app")
    backends = _backends(table.get("backends"), f"{prefix}.backends", backend_types)
    return Settings(backends=backends, source=str(document.file), **values)


def _backends(value: object, path: str,
              backend_types: Mapping[str, BackendType]) -> tuple[BackendSettings, ...]:
    if value is None or value == []:
        raise ConfigError(path, "at least one backend is required ([[...backends]] tables)")
    if not isinstance(value, list):
        raise ConfigError(path, f"expected an array of tables, got {_toml_type(value)}")
    found: list[BackendSettings] = []
    for index, entry in enumerate(value):
        backend = _backend(entry, f"{path}[{index}]", backend_types)
        for earlier, other in enumerate(found):
            if other.name == backend.name:
                raise ConfigError(f"{path}[{index}].name", f"duplicate backend name "
                                  f"{backend.name!r} (also {path}[{earlier}].name)")
        found.append(backend)
    return tuple(found)


def _backend(entry: object, path: str,
             backend_types: Mapping[str, BackendType]) -> BackendSettings:
    table = _table(entry, path)
    for required in _required_fields(BackendSettings):
        if required not in table:
            raise ConfigError(f"{path}.{required}", "missing required key")
    values = _convert_fields(BackendSettings, table, path, skip=frozenset({"options"}))
    _check_name(values["name"], f"{path}.name")
    backend_type = backend_types.get(values["type"])
    if backend_type is None:
        installed = ", ".join(sorted(backend_types)) or "none"
        raise ConfigError(f"{path}.type",
                          f"unknown backend type {values['type']!r} (installed: {installed})")
    backend_class = backend_type.backend_class
    common = [name for name in _field_names(BackendSettings) if name != "options"]
    options = backend_class.validate_options(
        {key: item for key, item in table.items() if key not in common}, path
    )
    values["url"] = values.get("url") or backend_class.default_url
    return BackendSettings(**values, options=dict(options))


def _check_name(name: str, path: str) -> None:
    if not _NAME_RE.fullmatch(name):
        raise ConfigError(path, "must be 1-64 characters from A-Z a-z 0-9 _ . -, "
                                "starting with a letter or digit")
    if name in _RESERVED_NAMES:
        raise ConfigError(path, f"{name!r} is reserved")


def _dataclass(cls: type[Any], value: object, path: str) -> object:
    table = _table(value, path)
    _reject_unknown(table, _field_names(cls), path)
    return cls(**_convert_fields(cls, table, path))


def _convert_fields(cls: type[Any], table: Mapping[str, object], path: str,
                    skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Convert and range-check the keys of ``table`` that are fields of ``cls``."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for name in _field_names(cls):
        if name in table and name not in skip:
            key_path = f"{path}.{name}"
            values[name] = _check_range(name, _convert(table[name], hints[name], key_path),
                                        key_path)
    return values


def _convert(value: object, hint: Any, path: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _dataclass(typing.cast(type[Any], hint), value, path)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        (hint,) = [arg for arg in args if arg is not type(None)]
        return _convert(value, hint, path)
    if origin is dict:
        return {key: _convert(item, args[1], f"{path}.{key}")
                for key, item in _table(value, path).items()}
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(path, f"expected an array, got {_toml_type(value)}")
        return tuple(_convert(item, args[0], f"{path}[{i}]") for i, item in enumerate(value))
    if hint not in _SCALARS:
        # A settings field of a new type: a bug to fix here, not the user's config error.
        raise TypeError(f"{path}: the config loader cannot read settings of type {hint!r}")
    accepts, convert, expected = _SCALARS[hint]
    if not accepts(value):
        raise ConfigError(path, f"expected {expected}, got {_toml_type(value)}")
    return convert(value)


def _check_range(name: str, value: Any, path: str) -> Any:
    if _is_number(value) and (value < 0 or (value == 0 and name not in _ZERO_ALLOWED)):
        raise ConfigError(path, f"must be {'>= 0' if name in _ZERO_ALLOWED else '> 0'}")
    if name in _CHOICES and value not in _CHOICES[name]:
        raise ConfigError(path, f"must be one of: {', '.join(_CHOICES[name])}")
    _check_notify(name, value, path)
    if name == "queues":
        if not value:
            raise ConfigError(path, "must name at least one queue")
        for index, queue in enumerate(value):
            try:
                validate_queue_name(queue)
            except SerializationError as exc:
                raise ConfigError(f"{path}[{index}]", str(exc)) from exc
    return value


def _check_notify(name: str, value: Any, path: str) -> None:
    """``[queuebridge.notify]``: a usable webhook URL and safe header lines."""
    if name == "webhook_url" and value:
        try:
            parts = urlsplit(value)
            usable = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:
            usable = False
        if not usable:
            # The URL may hold a token: name the problem, never echo the value.
            raise ConfigError(path, "must be an http:// or https:// URL with a host")
    if name == "webhook_headers":
        for header, text in value.items():
            if not _HEADER_NAME_RE.fullmatch(header):
                raise ConfigError(f"{path}.{header}", "not a valid HTTP header name")
            if "\r" in text or "\n" in text:
                raise ConfigError(f"{path}.{header}", "a header value may not contain a newline")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_SCALARS: Final[Mapping[Any, tuple[Callable[[object], bool], Callable[[Any], Any], str]]] = {
    bool: (lambda value: isinstance(value, bool), bool, "a boolean"),
    int: (_is_int, int, "an integer"),
    float: (_is_number, float, "a number"),
    str: (lambda value: isinstance(value, str), str, "a string"),
    Path: (lambda value: isinstance(value, str) and bool(value),
           lambda value: Path(value).expanduser(), "a non-empty path string"),
}
"""How each field type of the settings dataclasses is read: accepts, convert, description."""


def _table(value: object, path: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise ConfigError(path, f"expected a table, got {_toml_type(value)}")
    return value


def _reject_unknown(table: Mapping[str, object], allowed: Collection[str], path: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{path}.{key}", f"unknown key (allowed: {', '.join(allowed)})")


def _field_names(cls: type[Any]) -> tuple[str, ...]:
    return tuple(field.name for field in dataclasses.fields(cls) if field.init)


def _required_fields(cls: type[Any]) -> list[str]:
    return [field.name for field in dataclasses.fields(cls)
            if field.default is dataclasses.MISSING
            and field.default_factory is dataclasses.MISSING]


def _toml_type(value: object) -> str:
    return _TOML_TYPES.get(type(value), "a date/time")
