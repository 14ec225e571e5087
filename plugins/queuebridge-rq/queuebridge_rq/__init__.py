"""queuebridge-rq: the ``rq`` backend type (jobs stored as RQ-native records in Redis).

Installed, it registers itself through the ``queuebridge`` entry-point group::

    [[queuebridge.backends]]
    name = "primary"
    type = "rq"
    url = "redis://127.0.0.1:6379/0"

Jobs are real RQ jobs (JSON serializer), so ``rq info`` and rq-dashboard show them;
run them with queuebridge workers, not ``rq worker`` (task names are not import paths).

It also registers a worker state store for ``redis://``, ``rediss://``, ``unix://`` and
``redis+sentinel://`` URLs (``[queuebridge.worker] state = "${REDIS_URL}"``): dedup
claims, heartbeats and checkpoints shared by workers on every host.
"""

from __future__ import annotations

from queuebridge.hookspecs import BackendRegistrar, StateStoreRegistrar, hookimpl
from queuebridge_rq.backend import RQBackend
from queuebridge_rq.options import RQOptions
from queuebridge_rq.worker_state import RedisWorkerState

__all__ = ["RQBackend", "RQOptions", "RedisWorkerState", "queuebridge_register_backends",
           "queuebridge_register_state_stores"]
STATE_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel")


@hookimpl
def queuebridge_register_backends(register: BackendRegistrar) -> None:
    """Register the ``rq`` backend type."""
    register("rq", RQBackend)


@hookimpl
def queuebridge_register_state_stores(register: StateStoreRegistrar) -> None:
    """Register the Redis worker state store for Redis URL schemes."""
    for scheme in STATE_SCHEMES:
        register(scheme, RedisWorkerState.from_url)
