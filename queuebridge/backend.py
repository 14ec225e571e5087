"""The backend contract every broker adapter implements.

A backend subclasses :class:`Backend` and implements the ``_``-prefixed abstract
steps; the public methods around them do the shared bookkeeping (closed checks,
translating any stray exception so callers only ever see queuebridge's tree).

Guarantees an adapter must give (the contract suite in :mod:`queuebridge.testing`
checks them against a real broker):

* ``send`` returns only once the broker durably accepted the job.
* ``reserve`` hands out a *lease*: a delivery that is never acked becomes visible
  again after :meth:`Backend.recover` (or the broker's own redelivery).
* every blocking call returns or raises within ``BackendSettings.timeout``
  (plus the reserve ``timeout`` argument); an unreachable or hung broker raises
  :class:`~queuebridge.errors.BackendUnavailable`.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from queuebridge.envelope import Envelope
from queuebridge.errors import (
    BackendError,
    ConfigError,
    LeaseLost,
    QueueBridgeError,
    SerializationError,
)
from queuebridge.redact import redact_text, redact_url

__all__ = ["Backend", "BackendSettings", "Capabilities", "Delivery", "lost_leases"]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend type supports, declared on the class (never probed)."""

    delayed: bool = False
    """Jobs with ``not_before`` are held by the broker until due."""
    priorities: bool = False
    results: bool = False
    """Return values are kept and readable by job id."""
    batch_send: bool = False
    """``send_many`` is a real batch (one round trip), not a loop."""
    batch_ack: bool = False
    """``ack_many`` is a real batch (one round trip), not a loop: workers then ack from
    one thread in batches; otherwise each pool thread acks its own job."""
    shared_between_hosts: bool = True
    """False for brokers that live on the local disk (the filesystem transport)."""


@dataclass(frozen=True, slots=True)
class BackendSettings:
    """Validated settings for one configured backend.

    ``options`` holds the adapter-specific keys; the adapter validates them in
    :meth:`Backend.validate_options`. ``url`` may hold a password: show it only
    through :attr:`safe_url`.
    """

    name: str
    type: str
    url: str = ""
    timeout: float = 2.0
    """Upper bound, in seconds, of every broker operation (send, ack, ping, ...)."""
    connect_timeout: float = 2.0
    lease_timeout: float = 60.0
    """A leased job neither acked nor touched for this long is orphaned: ``recover``
    returns it to its queue. Workers touch their leases well within it."""
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def safe_url(self) -> str:
        """The URL with any password replaced by ``***``."""
        return redact_url(self.url)

    def __repr__(self) -> str:
        return (
            f"BackendSettings(name={self.name!r}, type={self.type!r}, url={self.safe_url!r}, "
            f"timeout={self.timeout}, connect_timeout={self.connect_timeout}, "
            f"options={sorted(self.options)})"
        )


@dataclass(frozen=True, slots=True, eq=False)
class Delivery:
    """A leased message. Hand it back to the backend that produced it.

    ``envelope`` is ``None`` when the message could not be decoded; ``problem``
    then says why, and the worker dead-letters it. ``receipt`` is the adapter's
    own handle (a delivery tag, a file path, an RQ job id ...).
    """

    backend: str
    queue: str
    receipt: Any
    envelope: Envelope | None
    raw: bytes = b""
    problem: str = ""
    redelivered: bool = False

    @property
    def job_id(self) -> str:
        """The job id, or ``"?"`` for a message that could not be decoded."""
        return self.envelope.id if self.envelope is not None else "?"


class Backend(ABC):
    """One configured broker. Subclass it, set ``capabilities``, implement the steps.

    Adapters register their subclass through the ``queuebridge_register_backends``
    hook; the core builds instances with :meth:`from_settings`.
    """

    capabilities: ClassVar[Capabilities] = Capabilities()
    option_keys: ClassVar[frozenset[str]] = frozenset()
    """Adapter-specific keys accepted in ``[[queuebridge.backends]]``."""
    default_url: ClassVar[str] = ""

    def __init__(self, settings: BackendSettings) -> None:
        self.settings = settings
        self._closed = False

    # -- construction --------------------------------------------------------------

    @classmethod
    def from_settings(cls, settings: BackendSettings) -> Backend:
        """Build a backend from validated settings. Must not connect yet."""
        return cls(settings)

    @classmethod
    def validate_options(cls, options: Mapping[str, Any], path: str) -> Mapping[str, Any]:
        """Check adapter-specific options; raise :class:`ConfigError` naming ``path.key``.

        The default accepts exactly :attr:`option_keys`. Override to check types too.
        """
        for key in options:
            if key not in cls.option_keys:
                allowed = ", ".join(sorted(cls.option_keys)) or "none"
                raise ConfigError(f"{path}.{key}", f"unknown option (allowed: {allowed})")
        return dict(options)

    @property
    def name(self) -> str:
        """The configured name of this backend (``primary``, ``alternate`` ...)."""
        return self.settings.name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.settings.safe_url}>"

    # -- public operations ---------------------------------------------------------

    def send(self, envelope: Envelope) -> None:
        """Durably hand one job to the broker. Raises ``BackendUnavailable``."""
        with self._translating("send"):
            self._send(envelope)

    def send_many(self, envelopes: Sequence[Envelope]) -> None:
        """Durably hand a batch to the broker: all accepted, or an exception.

        On an exception some of the batch may have been accepted; the caller resends
        the whole batch elsewhere (same ids, so duplicates are detectable).
        """
        if not envelopes:
            return
        with self._translating("send_many"):
            self._send_many(envelopes)

    def reserve(self, queues: Sequence[str], timeout: float) -> Delivery | None:
        """Lease the next due job from ``queues`` (in priority order).

        Waits up to ``timeout`` seconds; returns ``None`` when nothing arrived.
        """
        with self._translating("reserve"):
            return self._reserve(queues, timeout)

    def reserve_many(self, queues: Sequence[str], limit: int, timeout: float) -> list[Delivery]:
        """Lease up to ``limit`` due jobs from ``queues`` (in priority order).

        Waits up to ``timeout`` seconds for the first one, then takes only what is
        already there; returns ``[]`` when nothing arrived. The fast path for workers:
        adapters lease a batch in one round trip.
        """
        if limit < 1:
            return []
        with self._translating("reserve_many"):
            return self._reserve_many(queues, limit, timeout)

    def ack(self, delivery: Delivery) -> None:
        """The job finished: remove it for good."""
        with self._translating("ack"):
            self._ack(delivery)

    def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        """The jobs finished: remove them all for good. The fast path for workers:
        adapters ack a batch in one round trip.

        Every delivery is attempted. Raises ``LeaseLost`` when some of them were no
        longer leased (acked already, or recovered after their lease expired) *after*
        acking all the others. Raises ``BackendUnavailable`` (or another
        ``BackendError``) when the broker failed: then any subset may have been acked,
        and the rest stay leased until ``recover`` returns them. Empty: a no-op.
        """
        if not deliveries:
            return
        with self._translating("ack_many"):
            self._ack_many(deliveries)

    def retry(self, delivery: Delivery, envelope: Envelope) -> None:
        """Put ``envelope`` (the next attempt, same id) back on this broker, due at its
        ``not_before``, and release ``delivery``."""
        with self._translating("retry"):
            self._retry(delivery, envelope)

    def touch(self, deliveries: Sequence[Delivery]) -> None:
        """Extend the leases of jobs still running, so ``recover`` leaves them alone."""
        if deliveries:
            with self._translating("touch"):
                self._touch(deliveries)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Move the delivery to this broker's dead-letter place, keeping ``reason``."""
        with self._translating("dead_letter"):
            self._dead_letter(delivery, reason)

    def ping(self) -> float:
        """Round-trip to the broker; return the latency in seconds."""
        start = time.perf_counter()
        with self._translating("ping"):
            self._ping()
        return time.perf_counter() - start

    def depth(self, queue: str) -> int:
        """Number of jobs waiting (ready or delayed, not leased) in ``queue``."""
        with self._translating("depth"):
            return self._depth(queue)

    def recover(self) -> int:
        """Return orphaned leases (older than ``lease_timeout`` and untouched) and due
        delayed jobs to their queues; return how many moved. Safe to call from many
        workers at once: a job is returned once."""
        with self._translating("recover"):
            return self._recover()

    def dead_letters(self, queue: str, limit: int = 100) -> list[tuple[Delivery, str]]:
        """Inspect up to ``limit`` dead-lettered jobs of ``queue`` with their reasons."""
        with self._translating("dead_letters"):
            return self._dead_letters(queue, limit)

    # -- results (backends declaring ``capabilities.results``) -------------------------

    def store_result(self, envelope: Envelope, value: Any) -> None:
        """Keep the JSON return value of a job that succeeded, readable by its id.

        A no-op on backends without ``capabilities.results``. Raises
        ``SerializationError`` when ``value`` is not JSON, ``BackendUnavailable``.
        """
        if not self.capabilities.results:
            return
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise SerializationError(
                f"job {envelope.id}: return value of {envelope.task!r} is not JSON: {exc}"
            ) from exc
        with self._translating("store_result"):
            self._store_result(envelope, value)

    def job_status(self, job_id: str) -> str | None:
        """The broker's status of ``job_id`` (``queued``, ``started``, ``finished``,
        ``failed`` ...), or ``None`` when unknown here (or results are not supported)."""
        if not self.capabilities.results:
            return None
        with self._translating("job_status"):
            return self._job_status(job_id)

    def job_result(self, job_id: str) -> Any:
        """The stored return value of ``job_id``, or ``None``."""
        if not self.capabilities.results:
            return None
        with self._translating("job_result"):
            return self._job_result(job_id)

    def close(self) -> None:
        """Release connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with self._translating("close"):
            self._close()

    # -- steps each adapter implements --------------------------------------------

    @abstractmethod
    def _send(self, envelope: Envelope) -> None: ...

    def _send_many(self, envelopes: Sequence[Envelope]) -> None:
        for envelope in envelopes:
            self._send(envelope)

    @abstractmethod
    def _reserve(self, queues: Sequence[str], timeout: float) -> Delivery | None: ...

    def _reserve_many(self, queues: Sequence[str], limit: int, timeout: float
                      ) -> list[Delivery]:
        """Default: one ``_reserve`` per job. Override to lease a batch in one round trip."""
        first = self._reserve(queues, timeout)
        if first is None:
            return []
        leased = [first]
        while len(leased) < limit and (more := self._reserve(queues, 0.0)) is not None:
            leased.append(more)
        return leased

    @abstractmethod
    def _ack(self, delivery: Delivery) -> None: ...

    def _ack_many(self, deliveries: Sequence[Delivery]) -> None:
        """Default: one ``_ack`` per delivery. Override to ack a batch in one round trip.

        A lost lease does not stop the batch (the others are still ours to ack); any
        other error does, because a failing broker would make every further ack wait
        for its timeout.
        """
        lost = []
        for delivery in deliveries:
            try:
                self._ack(delivery)
            except LeaseLost:
                lost.append(delivery)
        if lost:
            raise lost_leases(self.name, lost, len(deliveries))

    @abstractmethod
    def _retry(self, delivery: Delivery, envelope: Envelope) -> None: ...

    def _touch(self, deliveries: Sequence[Delivery]) -> None:
        """Default: the broker ties the lease to the connection (AMQP); nothing to do."""

    @abstractmethod
    def _dead_letter(self, delivery: Delivery, reason: str) -> None: ...

    @abstractmethod
    def _ping(self) -> None: ...

    @abstractmethod
    def _depth(self, queue: str) -> int: ...

    @abstractmethod
    def _recover(self) -> int: ...

    @abstractmethod
    def _dead_letters(self, queue: str, limit: int) -> list[tuple[Delivery, str]]: ...

    @abstractmethod
    def _close(self) -> None: ...

    def _store_result(self, envelope: Envelope, value: Any) -> None:
        """Results-capable backends override the three result steps."""

    def _job_status(self, job_id: str) -> str | None:
        return None

    def _job_result(self, job_id: str) -> Any:
        return None

    # -- helpers -------------------------------------------------------------------

    def _translating(self, operation: str) -> _Translate:
        return _Translate(self, operation)


def lost_leases(backend: str, lost: Sequence[Delivery], total: int) -> LeaseLost:
    """The ``LeaseLost`` that ``ack_many`` raises for the ``lost`` part of a batch."""
    ids = ", ".join(delivery.job_id for delivery in lost[:10])
    more = f" and {len(lost) - 10} more" if len(lost) > 10 else ""
    return LeaseLost(f"ack_many: {len(lost)} of {total} deliveries no longer leased "
                     f"(acked already, or recovered after their lease expired): {ids}{more}; "
                     "the others were acked", backend=backend)


class _Translate:
    """Safety net: an adapter should translate driver errors itself, but anything
    that slips through still reaches the caller as a ``BackendError`` (cause kept)."""

    __slots__ = ("_backend", "_operation")

    def __init__(self, backend: Backend, operation: str) -> None:
        self._backend = backend
        self._operation = operation

    def __enter__(self) -> None:
        if self._backend._closed and self._operation != "close":
            raise BackendError(f"{self._operation} on a closed backend", backend=self._backend.name)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        if exc is None or isinstance(exc, QueueBridgeError) or not isinstance(exc, Exception):
            return
        message = redact_text(f"{self._operation} failed: {type(exc).__name__}: {exc}")
        raise BackendError(message, backend=self._backend.name) from exc
