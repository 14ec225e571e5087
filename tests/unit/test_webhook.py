"""The webhook notifier against a real local HTTP server, and the logging notifier's lines."""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from queuebridge.backend import BackendSettings
from queuebridge.backends.memory import MemoryBackend
from queuebridge.bridge import Bridge
from queuebridge.config import load_settings
from queuebridge.envelope import Envelope
from queuebridge.events import BackendDown, BackendUp, Failover
from queuebridge.plugins import PluginManager
from queuebridge.settings import NotifySettings, RouterSettings, Settings, SpoolSettings
from queuebridge.webhook import WebhookNotifier

SECRET = "s3cr3t-t0ken-XYZ"
WAIT = 5.0


@dataclass
class Receiver:
    """A local HTTP server recording each POST; answers from ``statuses`` (then 200)."""

    url: str = ""
    requests: queue.Queue[tuple[dict[str, str], dict[str, object]]] = field(
        default_factory=queue.Queue)
    statuses: list[int] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    hang: bool = False

    def next(self) -> tuple[dict[str, str], dict[str, object]]:
        return self.requests.get(timeout=WAIT)

    def bodies(self) -> list[dict[str, object]]:
        found = []
        while not self.requests.empty():
            found.append(self.requests.get_nowait()[1])
        return found


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.requests.put((dict(self.headers), body))
            if state.hang:
                state.release.wait(WAIT * 2)
            status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.block_on_close = False
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()
    thread.join(WAIT)


def notifying_bridge(notify: NotifySettings) -> tuple[Bridge, list[MemoryBackend]]:
    backends = [MemoryBackend(BackendSettings(name=name, type="memory", timeout=0.3))
                for name in ("primary", "alternate")]
    settings = Settings(backends=tuple(b.settings for b in backends),
                        router=RouterSettings(probe_interval=60.0, probe_max_interval=60.0),
                        spool=SpoolSettings(enabled=False), notify=notify)
    bridge = Bridge(backends, settings=settings, plugins=PluginManager(entry_points=False))
    return bridge, backends


def down_event(n: int = 0) -> BackendDown:
    return BackendDown(at=1000.0 + n, backend=f"b{n}", reason="connection refused")


def test_one_post_per_transition_never_per_job(receiver: Receiver) -> None:
    bridge, (primary, _) = notifying_bridge(NotifySettings(webhook_url=receiver.url))
    primary.break_()
    for _ in range(50):
        assert bridge.submit([Envelope.create("t")])[0].backend == "alternate"
    bridge.close()  # flushes what is pending
    headers, down = receiver.next()
    _, failover = receiver.next()
    assert (down["event"], down["backend"]) == ("backend_down", "primary")
    assert "connection refused" in str(down["reason"])
    assert (failover["event"], failover["from_backend"], failover["to_backend"]) == (
        "failover", "primary", "alternate")
    assert {"at", "host", "pid"} <= set(down)
    assert headers["Content-Type"] == "application/json"
    assert receiver.bodies() == []


def test_retries_a_5xx_with_backoff_then_succeeds(receiver: Receiver) -> None:
    receiver.statuses = [500, 503]
    notifier = WebhookNotifier(receiver.url, retries=3, backoff=0.01, timeout=2.0)
    notifier.notify(down_event())
    assert notifier.close(timeout=WAIT)
    assert [receiver.next()[1]["backend"] for _ in range(3)] == ["b0"] * 3
    assert (notifier.sent, notifier.failed) == (1, 0)


def test_gives_up_after_the_retries_and_does_not_retry_a_4xx(
        receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    receiver.statuses = [500, 500, 404]
    notifier = WebhookNotifier(receiver.url + "?token=" + SECRET, retries=1, backoff=0.01)
    notifier.notify(down_event(1))
    notifier.notify(down_event(2))
    assert notifier.close(timeout=WAIT)
    assert len([receiver.next() for _ in range(3)]) == 3  # 2 for the first, 1 for the 404
    assert (notifier.sent, notifier.failed) == (0, 2)
    assert "HTTP 404" in caplog.text and "HTTP 500" in caplog.text
    assert SECRET not in caplog.text and "token=***" in caplog.text


def test_a_hung_receiver_never_blocks_the_router(receiver: Receiver) -> None:
    receiver.hang = True
    bridge, (primary, _) = notifying_bridge(NotifySettings(
        webhook_url=receiver.url, webhook_timeout=0.3, webhook_retries=0))
    primary.break_()
    start = time.monotonic()
    for _ in range(20):
        bridge.submit([Envelope.create("t")])
    assert time.monotonic() - start < 0.3 * 2  # the first POST alone hangs 0.3 s
    receiver.next()  # the POST is in flight on the background thread
    start = time.monotonic()
    bridge.close()
    # The client gives up at its timeout, the Failover POST too: close is bounded.
    assert time.monotonic() - start < 0.3 * 2 + 1.0 + 1.0


def test_close_abandons_what_it_cannot_deliver_in_time(receiver: Receiver) -> None:
    receiver.hang = True
    notifier = WebhookNotifier(receiver.url, timeout=3.0, retries=0)
    notifier.notify(down_event(1))
    receiver.next()
    notifier.notify(down_event(2))
    start = time.monotonic()
    assert notifier.close(timeout=0.2) is False
    assert time.monotonic() - start < 1.0
    assert notifier.dropped == 1


def test_full_queue_drops_the_oldest_and_logs_once(
        receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    receiver.hang = True
    notifier = WebhookNotifier(receiver.url, max_pending=2, retries=0)
    notifier.notify(down_event(1))
    receiver.next()  # event 1 is in flight; the queue is empty
    for n in range(2, 6):
        notifier.notify(down_event(n))
    assert notifier.dropped == 2
    receiver.release.set()
    assert notifier.close(timeout=WAIT)
    assert [receiver.next()[1]["backend"] for _ in range(2)] == ["b4", "b5"]
    assert caplog.text.count("dropping the oldest") == 1


def test_headers_from_the_environment_are_sent_but_never_shown(
        receiver: Receiver, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = tmp_path / "queuebridge.toml"
    config.write_text(f"""
[[queuebridge.backends]]
name = "primary"
type = "memory"

[queuebridge.notify]
webhook_url = "{receiver.url}"
webhook_timeout = 2
webhook_retries = 0
webhook_headers = {{ Authorization = "Bearer ${{HOOK_TOKEN}}" }}
""")
    settings = load_settings(config, environ={"HOOK_TOKEN": SECRET},
                             plugins=PluginManager(entry_points=False))
    assert settings.notify.webhook_headers == {"Authorization": f"Bearer {SECRET}"}
    notifier = WebhookNotifier.from_settings(settings.notify)
    assert notifier is not None
    receiver.statuses = [500]
    notifier.notify(down_event())
    assert notifier.close(timeout=WAIT)
    headers, _ = receiver.next()
    assert headers["Authorization"] == f"Bearer {SECRET}"
    for shown in (repr(settings), repr(settings.notify), repr(notifier), caplog.text):
        assert SECRET not in shown
    assert "Authorization" in repr(notifier)


def test_no_webhook_without_a_url() -> None:
    assert WebhookNotifier.from_settings(NotifySettings()) is None


def test_redirects_are_not_followed(receiver: Receiver) -> None:
    receiver.statuses = [307]
    notifier = WebhookNotifier(receiver.url, retries=2, backoff=0.01,
                               headers={"Authorization": SECRET})
    notifier.notify(down_event())
    assert notifier.close(timeout=WAIT)
    receiver.next()
    assert (notifier.sent, notifier.failed) == (0, 1)
    assert receiver.bodies() == []


# -- the logging notifier ------------------------------------------------------------


def test_log_lines_name_backend_reason_and_outage_duration(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="queuebridge.events")
    bridge, (primary, _) = notifying_bridge(NotifySettings())
    primary.break_()
    bridge.submit([Envelope.create("t")])
    bridge.close()
    down, failover = caplog.records
    assert down.levelno == logging.WARNING
    assert "backend 'primary' is DOWN: primary: connection refused" in down.getMessage()
    assert "FAILOVER 'primary' -> 'alternate'" in failover.getMessage()
    assert down.queuebridge_event["backend"] == "primary"  # type: ignore[attr-defined]
    caplog.clear()
    PluginManager(entry_points=False).emit_transition(BackendUp(5.0, "primary", 72.25))
    (up,) = caplog.records
    assert "backend 'primary' is UP again after 72.2s" in up.getMessage()
    assert json.loads(up.getMessage().split(" ", 7)[-1])["downtime"] == 72.25


def test_log_transitions_false_silences_the_logging_notifier(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="queuebridge.events")
    bridge, (primary, _) = notifying_bridge(NotifySettings(log_transitions=False))
    primary.break_()
    bridge.submit([Envelope.create("t")])
    bridge.close()
    assert not [r for r in caplog.records if r.name == "queuebridge.events"]
    PluginManager(entry_points=False).emit_transition(
        Failover(1.0, "primary", "spool", "down"))
    assert "FAILOVER" in caplog.text  # another manager still has it


def test_only_http_urls() -> None:
    from queuebridge.errors import ConfigError

    with pytest.raises(ConfigError, match="http"):
        WebhookNotifier("file:///etc/passwd")
