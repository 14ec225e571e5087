"""A TCP proxy for RabbitMQ tests that shapes the broker's replies: it can delay
each chunk, or stall in the middle of a large frame (part of it forwarded, the
rest and everything after swallowed) — a broker that hangs mid-frame."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Final

__all__ = ["ShapingProxy"]

_POLL: Final = 0.05


class ShapingProxy:
    """Listens on ``127.0.0.1:<port>`` and forwards to ``target``; see the module."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5672)) -> None:
        self.target = target
        self.latency = 0.0
        """Seconds each chunk from the broker is held back."""
        self.stall_above = 0
        """When > 0: the first broker chunk longer than this is cut short and the
        stream stalls from there on."""
        self.stalled = threading.Event()
        self._stopped = threading.Event()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(_POLL)
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._accept_loop, name="shaping-proxy", daemon=True).start()

    def close(self) -> None:
        """Stop and close every connection (a client stuck reading sees EOF)."""
        self._stopped.set()
        for sock in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                continue
            upstream = socket.create_connection(self.target, timeout=2)
            self._sockets += [client, upstream]
            for source, sink, shaped in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(target=self._pump, args=(source, sink, shaped),
                                 daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, shaped: bool) -> None:
        source.settimeout(_POLL)
        while not self._stopped.is_set():
            try:
                data = source.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            if shaped:
                data = self._shape(data)
            with contextlib.suppress(OSError):
                sink.sendall(data)

    def _shape(self, data: bytes) -> bytes:
        if self.stalled.is_set():
            return b""
        if self.stall_above and len(data) > self.stall_above:
            self.stalled.set()
            return data[: self.stall_above // 2]
        if self.latency:
            time.sleep(self.latency)  # the simulated network delay, not synchronisation
        return data
