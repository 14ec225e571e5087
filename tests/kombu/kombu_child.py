"""Child process for the SIGKILL and sharing tests (run with ``python kombu_child.py``).

``block URL QUEUE``   lease one job, print ``leased <id>``, then hang until killed.
``drain URL QUEUE``   print ``ready``, wait for a line on stdin (so that several children
                      start together), then run jobs until the queue stays empty; print
                      ``ran <id>`` for each.
"""

from __future__ import annotations

import sys
import time

from queuebridge_kombu import KombuBackend

from queuebridge.backend import BackendSettings


def main(mode: str, url: str, queue: str) -> None:
    backend = KombuBackend.from_settings(
        BackendSettings(name="child", type="kombu", url=url, lease_timeout=30.0))
    if mode == "block":
        delivery = backend.reserve([queue], timeout=10)
        assert delivery is not None, "nothing to lease"
        print(f"leased {delivery.job_id}", flush=True)
        time.sleep(60)  # mid-job: the parent SIGKILLs us here
        return
    print("ready", flush=True)
    sys.stdin.readline()
    while (delivery := backend.reserve([queue], timeout=1.0)) is not None:
        print(f"ran {delivery.job_id}", flush=True)
        backend.ack(delivery)
    backend.close()


if __name__ == "__main__":
    main(*sys.argv[1:4])
