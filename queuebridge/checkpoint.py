"""Checkpoints: a long job saves its progress so a re-run resumes instead of restarting.

``ctx.checkpoint(state)`` (see :mod:`queuebridge.context`) stores JSON ``state`` under
the job id; a later attempt of the same job — a retry, or a redelivery after the
worker crashed — reads it with ``ctx.last_checkpoint()``. The worker clears it once the
job succeeds. Checkpoints live in the worker state database next to the dedup claims,
so they survive a worker crash on the same host.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from queuebridge.dedup import StateDatabase
from queuebridge.errors import SerializationError
from queuebridge.state import CheckpointStore

__all__ = ["SQLiteCheckpoints"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoints (
    job_id  TEXT PRIMARY KEY,
    state   TEXT NOT NULL,
    updated REAL NOT NULL
) WITHOUT ROWID;
"""


class SQLiteCheckpoints(CheckpointStore):
    """Job checkpoints in the worker state database (implements ``CheckpointAccess``)."""

    def __init__(self, path: Path) -> None:
        self._db = StateDatabase(Path(path), _SCHEMA)

    def save(self, job_id: str, state: Any) -> None:
        """Replace the checkpoint of ``job_id``. Raises :class:`SerializationError` when
        ``state`` is not JSON-serialisable, ``StoreUnavailable`` when the file is not."""
        try:
            text = json.dumps(state, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise SerializationError(f"job {job_id}: checkpoint state is not JSON: {exc}"
                                     ) from exc
        self._db.execute("INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?)",
                         (job_id, text, time.time()))

    def load(self, job_id: str) -> Any | None:
        """The last state saved for ``job_id``, or ``None``."""
        row = self._db.execute("SELECT state FROM checkpoints WHERE job_id = ?",
                               (job_id,)).fetchone()
        return None if row is None else json.loads(row[0])

    def clear(self, job_id: str) -> None:
        """Forget the checkpoint of a job that succeeded."""
        self._db.execute("DELETE FROM checkpoints WHERE job_id = ?", (job_id,))

    def close(self) -> None:
        """Close the database connections."""
        self._db.close()
