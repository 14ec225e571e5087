"""queuebridge-rq: the ``rq`` backend type (jobs stored as RQ-native records in Redis).

Installed, it registers itself through the ``queuebridge`` entry-point group::

    [[queuebridge.backends]]
    name = "primary"
    type = "rq"
    url = "redis://127.0.0.1:6379/0"

Jobs are real RQ jobs (JSON serializer), so ``rq info`` and rq-dashboard show them;
run them with queuebridge workers, not ``rq worker`` (task names are not import paths).
"""

from __future__ import annotations

from queuebridge.hookspecs import BackendRegistrar, hookimpl
from queuebridge_rq.backend import RQBackend
from queuebridge_rq.options import RQOptions

__all__ = ["RQBackend", "RQOptions", "queuebridge_register_backends"]


@hookimpl
def queuebridge_register_backends(register: BackendRegistrar) -> None:
    """Register the ``rq`` backend type."""
    register("rq", RQBackend)
