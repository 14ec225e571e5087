"""A small TCP fault proxy for chaos tests (threads, no dependencies).

Modes:

``pass``       forward both ways.
``refuse``     the listener is closed (new connections are refused) and existing
               connections are reset: a broker that went away.
``reset``      existing connections are reset (RST, via ``SO_LINGER 0``) and new ones
               are accepted and reset at once: a flapping network or a crashing broker.
``blackhole``  connections are accepted and kept, but nothing is forwarded: a hung
               broker or a partition. Data sent meanwhile is dropped.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from typing import Final

__all__ = ["FaultProxy"]

_POLL: Final = 0.05
MODES: Final = frozenset({"pass", "refuse", "reset", "blackhole"})


def _reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class FaultProxy:
    """Forward ``127.0.0.1:<port>`` to ``target`` unless told to misbehave."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.mode = "pass"
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._stopped = threading.Event()
        self._listener: socket.socket | None = None
        self.port = self._listen(0)
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self._acceptor.start()

    @property
    def url_host(self) -> str:
        """``host:port`` to put in a broker URL."""
        return f"127.0.0.1:{self.port}"

    def _listen(self, port: int) -> int:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
        listener.settimeout(_POLL)
        self._listener = listener
        bound: int = listener.getsockname()[1]
        return bound

    def set_mode(self, mode: str) -> None:
        """Switch mode; takes effect at once for existing and new connections."""
        assert mode in MODES, mode
        with self._lock:
            previous, self.mode = self.mode, mode
            if mode in ("refuse", "reset"):
                for client, upstream in self._pairs:
                    _reset(client)
                    _reset(upstream)
                self._pairs.clear()
            if mode == "refuse" and self._listener is not None:
                self._listener.close()
                self._listener = None
            if previous == "refuse" and mode != "refuse":
                self._listen(self.port)

    def heal(self) -> None:
        """Back to ``pass``."""
        self.set_mode("pass")

    def close(self) -> None:
        """Stop everything."""
        self._stopped.set()
        self.set_mode("refuse")
        self._acceptor.join(2)

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            listener = self._listener
            if listener is None:
                self._stopped.wait(_POLL)
                continue
            try:
                client, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            self._connect(client)

    def _connect(self, client: socket.socket) -> None:
        if self.mode == "reset":
            _reset(client)
            return
        try:
            upstream = socket.create_connection(self.target, timeout=2)
        except OSError:
            _reset(client)
            return
        with self._lock:
            self._pairs.append((client, upstream))
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        source.settimeout(_POLL)
        while not self._stopped.is_set():
            try:
                data = source.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            if self.mode == "blackhole":
                continue  # swallowed: the peer hears nothing
            try:
                sink.sendall(data)
            except OSError:
                break
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.close()
