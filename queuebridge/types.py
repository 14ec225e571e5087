"""Type aliases shared across queuebridge."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

__all__ = ["Environ", "Headers", "JSONValue", "TaskFunc"]

JSONValue: TypeAlias = (
    "bool | int | float | str | list[JSONValue] | dict[str, JSONValue] | None"
)
"""A value that survives a JSON round trip."""

Environ: TypeAlias = Mapping[str, str]
"""The process environment, passed explicitly so tests can pass their own."""

TaskFunc: TypeAlias = Callable[..., Any]
"""A function registered as a task."""

Headers: TypeAlias = Mapping[str, str]
"""Envelope headers: trace context, idempotency key and the like."""
