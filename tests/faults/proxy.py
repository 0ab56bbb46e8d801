"""A TCP proxy the fault tests control, in front of a server they must not touch (the machine's
PostgreSQL): ``kill`` closes every connection and refuses new ones, ``hang`` keeps accepting
but forwards nothing either way, ``restore`` goes back to forwarding (held bytes included)."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Literal

__all__ = ["TcpProxy"]

Mode = Literal["up", "down", "hung"]


class TcpProxy:
    """Listens on 127.0.0.1 (a free port) and forwards to ``target``; threads, no asyncio, so
    it runs beside any event loop."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.mode: Mode = "up"
        self._flowing = threading.Event()
        self._flowing.set()
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._listener = self._listen(0)
        self.port: int = self._listener.getsockname()[1]

    def _listen(self, port: int) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(128)
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return listener

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed: down
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                # Hung: the bytes are held here, unsent, until restore.
                self._flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def kill(self) -> None:
        """Close every connection and refuse new ones (the server died)."""
        self.mode = "down"
        # shutdown() wakes the accept() blocked on it; close() alone would leave it accepting.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        self._flowing.set()

    def hang(self) -> None:
        """Accept connections, forward nothing (the server stopped answering)."""
        self.mode = "hung"
        self._flowing.clear()

    def restore(self) -> None:
        """Forward again; after :meth:`kill`, listen again on the same port."""
        if self.mode == "down":
            self._listener = self._listen(self.port)
        self.mode = "up"
        self._flowing.set()

    def close(self) -> None:
        """Stop: close the listener and every connection."""
        self.kill()
