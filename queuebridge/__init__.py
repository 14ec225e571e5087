"""queuebridge: keep background jobs flowing when a message broker dies.

Importing this package does nothing else: no plugin loading, no connections.
"""

from __future__ import annotations

from queuebridge.backend import Backend, BackendSettings, Capabilities, Delivery
from queuebridge.bridge import Bridge, JobRef
from queuebridge.envelope import Envelope
from queuebridge.errors import (
    BackendError,
    BackendUnavailable,
    ConfigError,
    DeadlineExceeded,
    EnqueueError,
    EnvelopeError,
    JobRejected,
    JobTimeout,
    LeaseLost,
    NoBackendAvailable,
    PluginError,
    QueueBridgeError,
    SerializationError,
    SpoolFull,
    TaskError,
    UnknownTaskError,
)
from queuebridge.hookspecs import hookimpl
from queuebridge.registry import JobOptions, Task

__all__ = [
    "Backend",
    "BackendError",
    "BackendSettings",
    "BackendUnavailable",
    "Bridge",
    "Capabilities",
    "ConfigError",
    "DeadlineExceeded",
    "Delivery",
    "EnqueueError",
    "Envelope",
    "EnvelopeError",
    "JobOptions",
    "JobRef",
    "JobRejected",
    "JobTimeout",
    "LeaseLost",
    "NoBackendAvailable",
    "PluginError",
    "QueueBridgeError",
    "SerializationError",
    "SpoolFull",
    "Task",
    "TaskError",
    "UnknownTaskError",
    "hookimpl",
]

__version__ = "0.1.0"
