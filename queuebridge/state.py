"""Worker state: where dedup claims, heartbeats and checkpoints live.

A worker keeps three kinds of state, bundled in a :class:`WorkerState`:

* dedup claims (:class:`~queuebridge.dedup.DedupStore`) so an attempt runs once;
* heartbeats (:class:`~queuebridge.heartbeat.HeartbeatStore`) so live workers are listable;
* checkpoints (:class:`CheckpointStore`) so a re-run resumes a long job.

``[queuebridge.worker] state`` names where: a SQLite file path (one host; the default),
or a URL whose scheme a plugin registered through
``queuebridge_register_state_stores`` (``redis://``, ``rediss://``, ``unix://`` with
queuebridge-rq installed) so workers on many hosts share it. :func:`open_worker_state`
picks the implementation. Every store is advisory: when it is unreachable it raises
:class:`~queuebridge.dedup.StoreUnavailable` and the worker runs jobs anyway.
"""

from __future__ import annotations

import contextlib
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from queuebridge.dedup import DedupStore, SQLiteDedupStore
from queuebridge.errors import ConfigError, QueueBridgeError
from queuebridge.heartbeat import HeartbeatStore, SQLiteHeartbeats
from queuebridge.redact import redact_url

if TYPE_CHECKING:
    from queuebridge.plugins import PluginManager

__all__ = ["CheckpointStore", "StateStoreFactory", "WorkerState", "open_worker_state",
           "sqlite_worker_state", "url_scheme"]

StateStoreFactory: TypeAlias = Callable[[str], "WorkerState"]
"""What a plugin registers per URL scheme: build the state stores for a location."""

# "scheme://" only: a bare "C:\state.db" or "state:v2.db" is a file path, not a URL.
_URL: Final = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.\-]*)://")


class CheckpointStore(ABC):
    """Job checkpoints: JSON state saved under a job id by a running attempt.

    Implementations are thread-safe; every method raises
    :class:`~queuebridge.dedup.StoreUnavailable` when the store cannot be reached.
    """

    @abstractmethod
    def save(self, job_id: str, state: Any) -> None:
        """Replace the checkpoint of ``job_id``. Raises
        :class:`~queuebridge.errors.SerializationError` when ``state`` is not JSON."""

    @abstractmethod
    def load(self, job_id: str) -> Any | None:
        """The last state saved for ``job_id``, or ``None``."""

    @abstractmethod
    def clear(self, job_id: str) -> None:
        """Forget the checkpoint of a job that succeeded."""

    def close(self) -> None:
        """Release resources. Idempotent."""


@dataclass(frozen=True, slots=True)
class WorkerState:
    """The three stores of one worker, and where they live (``location``, redacted)."""

    dedup: DedupStore
    heartbeats: HeartbeatStore
    checkpoints: CheckpointStore
    location: str

    def close(self) -> None:
        """Close every store. Idempotent; a store failing to close does not stop the others."""
        for store in (self.dedup, self.heartbeats, self.checkpoints):
            with contextlib.suppress(QueueBridgeError, OSError):
                store.close()


def url_scheme(location: str) -> str | None:
    """The lower-cased scheme of ``location`` when it is a ``scheme://`` URL, else ``None``."""
    match = _URL.match(location)
    return match.group(1).lower() if match else None


def sqlite_worker_state(path: str | Path) -> WorkerState:
    """The stores in one local SQLite file (WAL), shared by the workers of one host.
    Opens nothing yet: the file is created on first use."""
    # Imported here: checkpoint.py subclasses CheckpointStore from this module.
    from queuebridge.checkpoint import SQLiteCheckpoints

    path = Path(path).expanduser()
    return WorkerState(SQLiteDedupStore(path), SQLiteHeartbeats(path), SQLiteCheckpoints(path),
                       str(path))


def open_worker_state(location: str, plugins: PluginManager) -> WorkerState:
    """The worker state for ``location``: a plugin's store for a URL whose scheme it
    registered, else a SQLite file at that path.

    Raises :class:`~queuebridge.errors.ConfigError` (key ``worker.state``) for an empty
    location or a URL scheme no installed plugin handles.
    """
    if not location.strip():
        raise ConfigError("worker.state", "must be a SQLite file path or a store URL")
    scheme = url_scheme(location)
    if scheme is None:
        return sqlite_worker_state(location)
    types = plugins.state_store_types()
    if scheme not in types:
        known = ", ".join(f"{name}://" for name in sorted(types)) or "none installed"
        raise ConfigError("worker.state", f"no plugin handles {redact_url(location)!r} "
                                          f"(state store URL schemes: {known})")
    return types[scheme].factory(location)
