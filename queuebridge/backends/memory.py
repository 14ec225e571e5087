"""An in-process backend for the core's unit tests.

It keeps every job in this process's memory, so it is *not* durable and not shared
between processes: never configure it in production. What it adds for tests is
fault injection — :meth:`MemoryBackend.break_` makes every call fail with
``BackendUnavailable`` (a refused connection), :meth:`MemoryBackend.hang` makes
every call block for the operation timeout first (a paused broker), and
:meth:`MemoryBackend.heal` restores it.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from queuebridge.backend import Backend, BackendSettings, Capabilities, Delivery, lost_leases
from queuebridge.envelope import Envelope
from queuebridge.errors import BackendUnavailable, EnvelopeError, LeaseLost
from queuebridge.hookspecs import BackendRegistrar, hookimpl

__all__ = ["MemoryBackend"]


@dataclass(slots=True)
class _Lease:
    queue: str
    raw: bytes
    expires: float
    owner: int


class _State:
    """The "broker": shared by every MemoryBackend built with ``shared_with``."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.ready: dict[str, deque[bytes]] = {}
        self.delayed: list[tuple[float, int, str, bytes]] = []
        self.leases: dict[int, _Lease] = {}
        self.dead: dict[str, list[tuple[bytes, str]]] = {}
        self.results: dict[str, Any] = {}
        self.tags = itertools.count(1)
        self.fault: str | None = None


class MemoryBackend(Backend):
    """Jobs in a dict of deques, guarded by one condition variable."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        delayed=True, results=True, batch_send=True, batch_ack=True, shared_between_hosts=False
    )
    default_url: ClassVar[str] = "memory://"

    def __init__(self, settings: BackendSettings, *, shared_with: MemoryBackend | None = None
                 ) -> None:
        super().__init__(settings)
        self._state: _State = shared_with._state if shared_with is not None else _State()
        self._cond = self._state.cond
        self._ready = self._state.ready
        self._delayed = self._state.delayed
        self._leases = self._state.leases
        self._dead = self._state.dead
        self._tags = self._state.tags
        self.calls = 0
        """How many broker operations were attempted (to prove a dead backend is not probed)."""

    # -- fault injection -----------------------------------------------------------

    def break_(self) -> None:
        """Refuse every operation, like a broker whose port is closed."""
        with self._cond:
            self._state.fault = "refused"
            self._cond.notify_all()

    def hang(self) -> None:
        """Block every operation for the operation timeout, like a SIGSTOPped broker."""
        with self._cond:
            self._state.fault = "hung"
            self._cond.notify_all()

    def heal(self) -> None:
        """Answer normally again. Jobs accepted before the fault are still there."""
        with self._cond:
            self._state.fault = None
            self._cond.notify_all()

    def put_raw(self, queue: str, raw: bytes) -> None:
        """Put arbitrary bytes on ``queue`` (to test malformed messages)."""
        with self._cond:
            self._ready.setdefault(queue, deque()).append(raw)
            self._cond.notify_all()

    def _check(self) -> None:
        """Apply the injected fault. Call with the lock held."""
        self.calls += 1
        if self._state.fault == "hung":
            deadline = time.monotonic() + self.settings.timeout
            while self._state.fault == "hung" and time.monotonic() < deadline:
                self._cond.wait(deadline - time.monotonic())
            if self._state.fault == "hung":
                raise BackendUnavailable("timed out (broker hung)", backend=self.name)
        if self._state.fault == "refused":
            raise BackendUnavailable("connection refused", backend=self.name)

    # -- the contract ----------------------------------------------------------------

    def _send(self, envelope: Envelope) -> None:
        self._send_many((envelope,))

    def _send_many(self, envelopes: Sequence[Envelope]) -> None:
        with self._cond:
            self._check()
            for env in envelopes:
                self._put(env.queue, env.encode(), env.not_before)
            self._cond.notify_all()

    def _put(self, queue: str, raw: bytes, not_before: float | None) -> None:
        if not_before is not None and not_before > time.time():
            heapq.heappush(self._delayed, (not_before, next(self._tags), queue, raw))
        else:
            self._ready.setdefault(queue, deque()).append(raw)

    def _promote_due(self) -> None:
        now = time.time()
        while self._delayed and self._delayed[0][0] <= now:
            _, _, queue, raw = heapq.heappop(self._delayed)
            self._ready.setdefault(queue, deque()).append(raw)

    def _reserve(self, queues: Sequence[str], timeout: float) -> Delivery | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                self._check()
                self._promote_due()
                for queue in queues:
                    pending = self._ready.get(queue)
                    if pending:
                        return self._lease(queue, pending.popleft())
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                wake = min(remaining, 0.05) if self._delayed else remaining
                self._cond.wait(wake)

    def _lease(self, queue: str, raw: bytes) -> Delivery:
        tag = next(self._tags)
        self._leases[tag] = _Lease(
            queue, raw, time.monotonic() + self.settings.lease_timeout, id(self)
        )
        try:
            envelope: Envelope | None = Envelope.decode(raw)
            problem = ""
        except EnvelopeError as exc:
            envelope, problem = None, str(exc)
        return Delivery(self.name, queue, tag, envelope, raw, problem)

    def _release(self, delivery: Delivery) -> _Lease:
        lease = self._leases.pop(delivery.receipt, None)
        if lease is None:
            raise LeaseLost(f"job {delivery.job_id} is not leased", backend=self.name)
        return lease

    def _ack(self, delivery: Delivery) -> None:
        with self._cond:
            self._check()
            self._release(delivery)

    def _ack_many(self, deliveries: Sequence[Delivery]) -> None:
        with self._cond:
            self._check()
            lost = [d for d in deliveries if self._leases.pop(d.receipt, None) is None]
        if lost:
            raise lost_leases(self.name, lost, len(deliveries))

    def _retry(self, delivery: Delivery, envelope: Envelope) -> None:
        with self._cond:
            self._check()
            self._release(delivery)
            self._put(envelope.queue, envelope.encode(), envelope.not_before)
            self._cond.notify_all()

    def _touch(self, deliveries: Sequence[Delivery]) -> None:
        with self._cond:
            self._check()
            expires = time.monotonic() + self.settings.lease_timeout
            for delivery in deliveries:
                lease = self._leases.get(delivery.receipt)
                if lease is not None:
                    lease.expires = expires

    def _dead_letter(self, delivery: Delivery, reason: str) -> None:
        with self._cond:
            self._check()
            lease = self._release(delivery)
            self._dead.setdefault(lease.queue, []).append((lease.raw, reason))

    def _dead_letters(self, queue: str, limit: int) -> list[tuple[Delivery, str]]:
        with self._cond:
            self._check()
            found = []
            for raw, reason in self._dead.get(queue, [])[:limit]:
                try:
                    envelope: Envelope | None = Envelope.decode(raw)
                except EnvelopeError:
                    envelope = None
                found.append((Delivery(self.name, queue, None, envelope, raw), reason))
            return found

    def _ping(self) -> None:
        with self._cond:
            self._check()

    def _depth(self, queue: str) -> int:
        with self._cond:
            self._check()
            delayed = sum(1 for item in self._delayed if item[2] == queue)
            return len(self._ready.get(queue, ())) + delayed

    def _recover(self) -> int:
        with self._cond:
            self._check()
            now = time.monotonic()
            expired = [tag for tag, lease in self._leases.items() if lease.expires <= now]
            for tag in expired:
                lease = self._leases.pop(tag)
                self._ready.setdefault(lease.queue, deque()).appendleft(lease.raw)
            if expired:
                self._cond.notify_all()
            return len(expired)

    def _close(self) -> None:
        with self._cond:
            # Like a dropped connection: unacked leases become visible again.
            for tag in [t for t, lease in self._leases.items() if lease.owner == id(self)]:
                lease = self._leases.pop(tag)
                self._ready.setdefault(lease.queue, deque()).appendleft(lease.raw)
            self._cond.notify_all()


    def _store_result(self, envelope: Envelope, value: Any) -> None:
        with self._cond:
            self._check()
            self._state.results[envelope.id] = value

    def _job_result(self, job_id: str) -> Any:
        with self._cond:
            self._check()
            return self._state.results.get(job_id)

    def _job_status(self, job_id: str) -> str | None:
        with self._cond:
            self._check()
            return "finished" if job_id in self._state.results else None


@hookimpl
def queuebridge_register_backends(register: BackendRegistrar) -> None:
    """Register the ``memory`` backend type."""
    register("memory", MemoryBackend)
