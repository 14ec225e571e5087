"""Loading and validating configuration (TOML). Placeholder until the loader lands."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from queuebridge.errors import ConfigError
from queuebridge.plugins import PluginManager
from queuebridge.settings import Settings

__all__ = ["load_settings"]


def load_settings(path: Path | None, *, environ: Mapping[str, str],
                  plugins: PluginManager) -> Settings:
    """Find, parse and validate the configuration."""
    raise ConfigError("queuebridge", "config loading is not implemented yet")
