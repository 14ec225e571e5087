"""The exception tree.

Every error queuebridge raises derives from :class:`QueueBridgeError`; adapters
translate their driver's exceptions at the call site (``raise BackendUnavailable(...)
from exc``) so callers never see a broker client's exception type::

    QueueBridgeError
    ├── ConfigError               bad configuration; names the key's path
    ├── PluginError               a plugin failed to load or registered nonsense
    ├── TaskError                 a problem with a task or its arguments
    │   ├── UnknownTaskError      no task registered under that name
    │   └── SerializationError    an argument is not JSON-serialisable
    ├── EnvelopeError             a message on the wire is malformed
    ├── BackendError              a broker operation failed
    │   ├── BackendUnavailable    the broker is unreachable, refused, hung or timed out
    │   └── LeaseLost             an ack/retry named a delivery the broker no longer holds
    ├── EnqueueError              an enqueue could not be accepted anywhere
    │   ├── DeadlineExceeded      the enqueue deadline passed before any backend accepted
    │   ├── NoBackendAvailable    every backend is down and no spool is configured
    │   ├── SpoolFull             every backend is down and the spool is full
    │   └── JobRejected           every backend answered and refused the job (not an outage)
    └── JobTimeout                raised inside a task whose soft time limit passed
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BackendUnavailable",
    "ConfigError",
    "DeadlineExceeded",
    "EnqueueError",
    "EnvelopeError",
    "JobRejected",
    "JobTimeout",
    "LeaseLost",
    "NoBackendAvailable",
    "PluginError",
    "QueueBridgeError",
    "SerializationError",
    "SpoolFull",
    "TaskError",
    "UnknownTaskError",
]


class QueueBridgeError(Exception):
    """Root of every exception queuebridge raises."""


class ConfigError(QueueBridgeError):
    """The configuration is invalid.

    ``path`` is the dotted key path of the offending value, for example
    ``queuebridge.backends[1].url``; ``source`` is the file it came from (empty when
    unknown). Both are part of the message: ``source: path: message``.
    """

    def __init__(self, path: str, message: str, *, source: str = "") -> None:
        self.path = path
        self.reason = message
        self.source = source
        text = f"{path}: {message}" if path else message
        super().__init__(f"{source}: {text}" if source else text)


class PluginError(QueueBridgeError):
    """A plugin could not be loaded, or registered something invalid."""


class TaskError(QueueBridgeError):
    """A problem with a task: its name, its options or its arguments."""


class UnknownTaskError(TaskError):
    """No task is registered under the given name."""

    def __init__(self, name: str, known: list[str] | None = None) -> None:
        self.name = name
        hint = f"; registered tasks: {', '.join(sorted(known))}" if known else ""
        super().__init__(f"unknown task {name!r}{hint}")


class SerializationError(TaskError):
    """An argument of a job cannot be encoded as JSON."""


class EnvelopeError(QueueBridgeError):
    """A message body is not a valid queuebridge envelope."""


class BackendError(QueueBridgeError):
    """A broker operation failed. ``backend`` names the configured backend."""

    def __init__(self, message: str, *, backend: str = "") -> None:
        self.backend = backend
        super().__init__(f"{backend}: {message}" if backend else message)


class BackendUnavailable(BackendError):
    """The broker cannot be reached: refused, reset, hung past its timeout, or loading.

    The router treats this as "circuit open" and moves the job to the next backend.
    """


class LeaseLost(BackendError):
    """An ack, retry or dead-letter named a delivery the broker no longer holds."""


class EnqueueError(QueueBridgeError):
    """The job could not be accepted by any backend nor the spool. Nothing was lost:
    the caller still holds the job and may retry."""


class DeadlineExceeded(EnqueueError):
    """The enqueue deadline passed before any backend accepted the job."""


class NoBackendAvailable(EnqueueError):
    """Every backend is down and no spool is configured."""


class SpoolFull(EnqueueError):
    """Every backend is down and the local spool has reached its configured bound."""


class JobRejected(EnqueueError):
    """Every backend that was tried answered, and refused the job (a broker-side limit,
    a permission, a message it will not take). Not an outage, so it is not spooled:
    the caller still holds the job and must change it or the brokers."""


class JobTimeout(QueueBridgeError):
    """Raised inside a running task whose soft time limit has passed."""
