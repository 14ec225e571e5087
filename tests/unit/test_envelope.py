"""The wire envelope: JSON only, versioned, and every malformed input named."""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

import pytest

from queuebridge.backend import BackendSettings
from queuebridge.backends.memory import MemoryBackend
from queuebridge.bridge import Bridge
from queuebridge.envelope import ENVELOPE_VERSION, Envelope
from queuebridge.errors import EnvelopeError, SerializationError, TaskError, UnknownTaskError


def _valid() -> dict[str, Any]:
    return Envelope.create("app.fetch", ("https://example.com",), {"depth": 2},
                           queue="crawl", max_retries=3, delay=5.0,
                           headers={"traceparent": "00-abc"}).to_dict()


def test_round_trip_keeps_every_field() -> None:
    env = Envelope.create("app.fetch", (1, [2, 3]), {"k": {"n": None}}, queue="q",
                          job_id="my-id.1", max_retries=2, delay=30, headers={"a": "b"})
    again = Envelope.decode(env.encode())
    assert again == env
    assert again.id == "my-id.1"
    assert again.not_before == pytest.approx(env.created_at + 30)


def test_wire_format_is_plain_json_with_a_version() -> None:
    body = json.loads(Envelope.create("t.x", (1,)).encode())
    assert body["v"] == ENVELOPE_VERSION
    assert set(body) == {"v", "id", "task", "args", "kwargs", "queue", "attempt",
                         "max_retries", "created_at", "not_before", "headers"}


def test_next_attempt_keeps_the_id() -> None:
    env = Envelope.create("t.x", max_retries=2)
    retry = env.next_attempt(delay=10, now=1000.0)
    assert (retry.id, retry.attempt, retry.not_before) == (env.id, 2, 1010.0)
    assert env.retries_left == 2
    assert retry.retries_left == 1


@pytest.mark.parametrize(
    ("args", "kwargs", "where"),
    [
        ((datetime(2026, 1, 1),), {}, "args[0]"),
        ((1, {2, 3}), {}, "args[1]"),
        ((), {"when": object()}, "kwargs['when']"),
        ((math.nan,), {}, "args[0]"),
    ],
)
def test_unserialisable_argument_names_task_and_argument(
    args: tuple[Any, ...], kwargs: dict[str, Any], where: str
) -> None:
    with pytest.raises(SerializationError) as info:
        Envelope.create("app.report", args, kwargs)
    assert "app.report" in str(info.value)
    assert where in str(info.value)


def test_non_string_keyword_is_refused() -> None:
    with pytest.raises(SerializationError, match="keyword 1"):
        Envelope.create("app.report", (), {1: "x"})  # type: ignore[dict-item]


@pytest.mark.parametrize("job_id", ["", "has space", "a/b", "x" * 129, "-leading"])
def test_bad_job_id_is_refused(job_id: str) -> None:
    with pytest.raises(SerializationError, match="job id"):
        Envelope.create("t.x", job_id=job_id)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(v=99), "unsupported envelope version 99"),
        (lambda d: d.pop("task"), "missing field 'task'"),
        (lambda d: d.update(args="nope"), "field 'args' must be list"),
        (lambda d: d.update(attempt=True), "field 'attempt' must be int"),
        (lambda d: d.update(extra=1), "unknown envelope fields: extra"),
        (lambda d: d.update(headers={"a": 1}), "headers must map strings to strings"),
        (lambda d: d.update(not_before="soon"), "'not_before' must be a number or null"),
        (lambda d: d.update(id="../etc"), "invalid job id"),
    ],
)
def test_decode_names_what_is_wrong(mutate: Any, message: str) -> None:
    body = _valid()
    mutate(body)
    with pytest.raises(EnvelopeError) as info:
        Envelope.decode(json.dumps(body))
    assert message in str(info.value)


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b"\xff\xfe", b'{"v": 1'])
def test_decode_rejects_what_is_not_an_envelope(raw: bytes) -> None:
    with pytest.raises(EnvelopeError):
        Envelope.decode(raw)


def test_decode_never_unpickles() -> None:
    import pickle

    with pytest.raises(EnvelopeError, match="not valid JSON"):
        Envelope.decode(pickle.dumps({"v": 1}))


def test_a_refused_enqueue_sends_nothing_and_names_the_problem() -> None:
    backend = MemoryBackend(BackendSettings(name="mem", type="memory"))
    bridge = Bridge([backend])

    @bridge.task(name="app.report")
    def report(when: object) -> None: ...

    with pytest.raises(SerializationError, match=r"app\.report.*args\[0\]"):
        report.enqueue(datetime(2026, 1, 1))
    with pytest.raises(UnknownTaskError, match=r"app\.missing"):
        bridge.enqueue("app.missing")
    with pytest.raises(TaskError, match="delay"):
        report.with_options(delay=-1).enqueue(1)
    assert backend.calls == 0, "nothing reached the broker"
    assert backend.depth("default") == 0
