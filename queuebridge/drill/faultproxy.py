"""A TCP fault proxy: put it between a client and a broker, then cut the traffic.

Modes:

``pass``       forward bytes both ways.
``refuse``     new connections are reset at once (like a closed port); existing ones too.
``reset``      existing connections are reset (RST), new ones are accepted and forwarded.
``blackhole``  connections stay open but no byte is forwarded in either direction — the
               hardest failure: only the client's timeouts notice it.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
from typing import Literal

__all__ = ["FaultProxy", "Mode"]

Mode = Literal["pass", "refuse", "reset", "blackhole"]


def _reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0, which sends RST instead of FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class FaultProxy:
    """Listens on ``127.0.0.1:<port>`` and forwards to ``target``."""

    def __init__(self, target_host: str, target_port: int, port: int = 0) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", port), reuse_port=False)
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._mode: Mode = "pass"
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="faultproxy", daemon=True)
        self._thread.start()

    @property
    def mode(self) -> Mode:
        """The current mode."""
        return self._mode

    def set_mode(self, mode: Mode) -> None:
        """Switch mode; ``refuse`` and ``reset`` also reset every open connection."""
        with self._lock:
            self._mode = mode
            if mode in ("refuse", "reset"):
                for client, upstream in self._pairs:
                    _reset(client)
                    _reset(upstream)
                self._pairs.clear()

    def heal(self) -> None:
        """Back to ``pass``. Blackholed connections are reset so clients reconnect."""
        with self._lock:
            if self._mode == "blackhole":
                for client, upstream in self._pairs:
                    _reset(client)
                    _reset(upstream)
                self._pairs.clear()
            self._mode = "pass"

    def close(self) -> None:
        """Stop listening and drop every connection."""
        self._stopped.set()
        self._listener.close()
        self.set_mode("reset")
        self._thread.join(timeout=2)

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._mode == "refuse":
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        try:
            while not self._stopped.is_set():
                readable, _, _ = select.select(list(peers), [], [], 0.1)
                if self._mode == "blackhole":
                    # Hold the bytes: neither side hears anything until healed.
                    self._stopped.wait(0.05)
                    continue
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            with self._lock:
                if (client, upstream) in self._pairs:
                    self._pairs.remove((client, upstream))
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.close()
