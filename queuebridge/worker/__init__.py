"""The queuebridge worker: consume every configured backend, run registered tasks.

    from queuebridge.worker import Worker, WorkerOptions

    worker = Worker(bridge, WorkerOptions(queues=("default",), concurrency=8))
    exit_code = worker.run()      # blocks; SIGTERM/SIGINT or worker.stop() end it

See ``docs/worker.md`` for retries, timeouts, burst mode and failure behaviour.
"""

from __future__ import annotations

from queuebridge.worker.core import Worker
from queuebridge.worker.options import WorkerOptions, WorkerStats

__all__ = ["Worker", "WorkerOptions", "WorkerStats"]
