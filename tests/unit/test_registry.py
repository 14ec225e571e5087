"""Task registration, job options, redaction and the backend ABC's safety net."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from queuebridge.backend import Backend, BackendSettings, Delivery
from queuebridge.backends.memory import MemoryBackend
from queuebridge.bridge import Bridge
from queuebridge.envelope import Envelope
from queuebridge.errors import BackendError, TaskError, UnknownTaskError
from queuebridge.redact import redact_text, redact_url


@pytest.fixture
def bridge() -> Bridge:
    return Bridge([MemoryBackend(BackendSettings(name="mem", type="memory"))])


def module_level(x: int) -> int:
    return x * 2


def test_default_name_is_module_qualname_and_direct_calls_still_work(bridge: Bridge) -> None:
    task = bridge.task(module_level)
    assert task.name == f"{__name__}.module_level"
    assert task(21) == 42
    assert bridge.registry.get(task.name) is task


def test_nested_function_needs_an_explicit_name(bridge: Bridge) -> None:
    def inner() -> None: ...

    with pytest.raises(TaskError, match="explicit name"):
        bridge.task(inner)
    assert bridge.task(name="app.inner")(inner).name == "app.inner"


def test_one_name_one_function(bridge: Bridge) -> None:
    bridge.task(name="app.a")(module_level)
    with pytest.raises(TaskError, match="already registered"):
        bridge.task(name="app.a")(lambda: None)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"retries": -1}, "retries"), ({"timeout": 0}, "timeout"),
     ({"name": "has space"}, "invalid task name"), ({"queue": "a/b"}, "queue name")],
)
def test_bad_task_options_are_named(bridge: Bridge, options: dict[str, Any],
                                    message: str) -> None:
    with pytest.raises(TaskError, match=message):
        bridge.task(**{"name": "app.t", **options})(module_level)


def test_job_options_never_collide_with_task_kwargs(bridge: Bridge) -> None:
    @bridge.task(name="app.send", queue="mail", retries=2)
    def send(queue: str, delay: int) -> None: ...

    ref = send.with_options(queue="urgent", delay=60, job_id="mail-1").enqueue(
        queue="task-arg", delay=5
    )
    backend = bridge.backends["mem"]
    assert (ref.id, ref.queue, ref.backend) == ("mail-1", "urgent", "mem")
    assert backend.depth("urgent") == 1
    refs = bridge.enqueue_many([send.job((), {"queue": "q", "delay": 1}) for _ in range(3)])
    assert {r.queue for r in refs} == {"mail"}


def test_enqueue_by_name_of_an_unknown_task_lists_the_known(bridge: Bridge) -> None:
    bridge.task(name="app.known")(module_level)
    with pytest.raises(UnknownTaskError, match=r"registered tasks: app\.known"):
        bridge.enqueue("app.unknown")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://s3cret@h", "redis://***@h"),
        ("amqp://guest:s3cret@a//;amqp://guest:s3cret@b//", "amqp://guest:***@a//;amqp://guest:***@b//"),
        ("rediss://h/0?password=s3cret&db=1", "rediss://h/0?password=***&db=1"),
        ("filesystem:///var/q", "filesystem:///var/q"),
    ],
)
def test_urls_are_redacted(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "s3cret" not in redact_text(f"failed to reach {url}: refused")


class _Leaky(MemoryBackend):
    """A careless adapter that lets a driver exception escape."""

    def _send_many(self, envelopes: Sequence[Envelope]) -> None:
        raise ConnectionResetError("reset by amqp://guest:s3cret@mq//")

    def _ack(self, delivery: Delivery) -> None:
        raise KeyboardInterrupt  # not an Exception: must not be swallowed or wrapped


def test_stray_driver_errors_are_translated_with_cause_and_redacted() -> None:
    backend: Backend = _Leaky(BackendSettings(name="leaky", type="memory"))
    with pytest.raises(BackendError) as info:
        backend.send(Envelope.create("t.x"))
    assert isinstance(info.value.__cause__, ConnectionResetError)
    assert "s3cret" not in str(info.value)
    assert info.value.backend == "leaky"
    with pytest.raises(KeyboardInterrupt):
        backend.ack(Delivery("leaky", "q", 1, None))


@pytest.mark.parametrize(
    "text",
    [
        "connect to redis://:p@ssw0rd@host:6379/0 failed",
        "amqp://guest:se;cret@mq//",
        "amqp://guest:s3cret@h1;amqp://guest:s3cret@h2",
    ],
)
def test_passwords_with_at_or_semicolon_are_redacted_in_text(text: str) -> None:
    shown = redact_text(text)
    assert "ssw0rd" not in shown
    assert "cret" not in shown


def test_worker_options_repr_hides_the_state_url() -> None:
    from queuebridge.worker import WorkerOptions

    assert "hunter2" not in repr(WorkerOptions(state="redis://:hunter2@redis:6379/0"))


class _BadClose(MemoryBackend):
    def _close(self) -> None:
        raise OSError("socket already gone")


def test_close_closes_every_backend_even_when_one_fails() -> None:
    first = _BadClose(BackendSettings(name="first", type="memory"))
    second = MemoryBackend(BackendSettings(name="second", type="memory"))
    bridge = Bridge([first, second])
    with pytest.raises(BackendError, match="socket already gone"):
        bridge.close()
    with pytest.raises(BackendError, match="closed"):
        second.send(Envelope.create("t.x"))
