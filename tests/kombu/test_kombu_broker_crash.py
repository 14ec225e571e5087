"""RabbitMQ itself crashes (SIGKILL of a private node) and restarts.

What a confirmed send returned for must still be there — ready and delayed jobs alike —
and the same backend object reconnects by itself.
"""

from __future__ import annotations

import time

import pytest
from queuebridge_kombu import KombuBackend

from queuebridge.backend import Backend, BackendSettings
from queuebridge.envelope import Envelope
from queuebridge.errors import BackendUnavailable
from tests.rabbit_server import RabbitProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]


def _backend(url: str) -> Backend:
    return KombuBackend.from_settings(BackendSettings(
        name="rabbit", type="kombu", url=url, timeout=1.0, connect_timeout=1.0,
        lease_timeout=5.0,
    ))


def test_confirmed_and_delayed_jobs_survive_a_broker_crash(private_rabbit: RabbitProcess
                                                           ) -> None:
    backend = _backend(private_rabbit.url)
    try:
        ready = [Envelope.create("t.crash", (i,), queue="crash") for i in range(50)]
        delayed = Envelope.create("t.crash", ("later",), queue="crash", delay=4.0)
        backend.send_many(ready)
        backend.send(delayed)

        private_rabbit.kill()
        start = time.monotonic()
        with pytest.raises(BackendUnavailable):
            backend.send(Envelope.create("t.crash", queue="crash"))
        assert time.monotonic() - start < 5.0
        private_rabbit.start()

        seen: set[str] = set()
        deadline = time.monotonic() + 60
        while len(seen) < 51 and time.monotonic() < deadline:
            try:
                leased = backend.reserve_many(["crash"], 20, timeout=0.5)
                if not leased:
                    backend.recover()  # as a worker does: a lease a failed call left behind
            except BackendUnavailable:
                continue  # the node is up but still settling: the adapter reconnects
            for delivery in leased:
                assert delivery.envelope is not None
                seen.add(delivery.envelope.id)
                backend.ack(delivery)
        expected = {env.id for env in ready} | {delayed.id}
        missing = expected - seen
        assert seen == expected, (
            f"missing {len(missing)} (delayed one among them: {delayed.id in missing}), "
            f"unexpected {len(seen - expected)}"
        )
        assert time.time() >= (delayed.not_before or 0) - 0.05, "the delayed job ran early"
    finally:
        backend.close()
