"""A TCP fault proxy: put it between a client and a broker, then cut the traffic.

Modes:

``pass``       forward bytes both ways.
``refuse``     the listener is closed (new connections are refused, like a dead
               broker's port) and existing connections are reset.
``reset``      existing connections are reset (RST) and new ones are accepted and reset
               at once: a crashing broker or a flapping network.
``blackhole``  connections are accepted and kept, but no byte is forwarded in either
               direction — the hardest failure: only the client's timeouts notice it.

Healing from ``blackhole`` resets the connections that were blackholed: bytes were
swallowed, so their streams can no longer be trusted, and clients reconnect.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from typing import Final, Literal

__all__ = ["FaultProxy", "Mode"]

Mode = Literal["pass", "refuse", "reset", "blackhole"]
_POLL: Final = 0.05


def _reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0, which sends RST instead of FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class FaultProxy:
    """Listens on ``127.0.0.1:<port>`` (a free one unless given) and forwards to
    ``target_host:target_port`` unless told to misbehave."""

    def __init__(self, target_host: str, target_port: int, port: int = 0) -> None:
        self.target = (target_host, target_port)
        self._mode: Mode = "pass"
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._stopped = threading.Event()
        self._listener: socket.socket | None = None
        self.port: int = self._listen(port)
        self._thread = threading.Thread(target=self._accept_loop, name="faultproxy", daemon=True)
        self._thread.start()

    @property
    def mode(self) -> Mode:
        """The current mode."""
        return self._mode

    def set_mode(self, mode: Mode) -> None:
        """Switch mode; it applies at once to existing and new connections."""
        with self._lock:
            previous, self._mode = self._mode, mode
            if mode in ("refuse", "reset") or (previous == "blackhole" and mode == "pass"):
                self._reset_all()
            if mode == "refuse" and self._listener is not None:
                self._listener.close()
                self._listener = None
            if previous == "refuse" and mode != "refuse" and not self._stopped.is_set():
                self._listen(self.port)

    def heal(self) -> None:
        """Back to ``pass``."""
        self.set_mode("pass")

    def close(self) -> None:
        """Stop listening and drop every connection."""
        self._stopped.set()
        self.set_mode("refuse")
        self._thread.join(timeout=2)

    def _listen(self, port: int) -> int:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
        listener.settimeout(_POLL)
        self._listener = listener
        bound: int = listener.getsockname()[1]
        return bound

    def _reset_all(self) -> None:
        for client, upstream in self._pairs:
            _reset(client)
            _reset(upstream)
        self._pairs.clear()

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            listener = self._listener
            if listener is None:
                self._stopped.wait(_POLL)
                continue
            try:
                client, _ = listener.accept()
            except OSError:  # the poll timeout, or the listener closed under us
                continue
            self._connect(client)

    def _connect(self, client: socket.socket) -> None:
        if self._mode == "reset":
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

    def _blackholed(self) -> bool:
        # A method, not an inline test: the mode changes under the pump between reads.
        return self._mode == "blackhole"

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        source.settimeout(_POLL)
        while not self._stopped.is_set():
            if self._blackholed():
                # Hold the bytes in the kernel: neither side hears anything.
                self._stopped.wait(_POLL)
                continue
            try:
                data = source.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            if self._blackholed():
                continue  # read as the hole opened: swallowed (healing resets this stream)
            try:
                sink.sendall(data)
            except OSError:
                break
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.close()
