"""A loopback TCP proxy the tests control: forward, freeze (a network partition), thaw, refuse.

``Proxy(port)`` listens on a free port of 127.0.0.1 and forwards each client
connection to ``127.0.0.1:port``.  ``freeze()`` stops all forwarding, both ways,
while every socket stays open (a partition: nothing is refused, nothing
arrives, new clients complete their TCP handshake and then hear nothing);
``thaw()`` resumes it; ``close()`` ends it all.  It runs in one daemon thread.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from typing import Any

__all__ = ["Proxy"]


class Proxy:
    """See the module docstring."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port: int = self.listener.getsockname()[1]
        self.frozen = False
        self._stopped = False
        self._peers: dict[socket.socket, socket.socket] = {}
        self._thread = threading.Thread(target=self._run, name="test-proxy", daemon=True)
        self._thread.start()

    def dsn(self, dbname: str = "test", user: str = "postgres") -> str:
        """A libpq DSN through the proxy."""
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user={user}"

    def freeze(self) -> None:
        """Stop forwarding, both ways; every socket stays open."""
        self.frozen = True

    def thaw(self) -> None:
        """Forward again."""
        self.frozen = False

    def close(self) -> None:
        """Close every socket and stop the thread."""
        self._stopped = True
        self._thread.join(5)
        for s in [self.listener, *self._peers]:
            try:
                s.close()
            except OSError:
                pass

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _run(self) -> None:
        while not self._stopped:
            if self.frozen:
                time.sleep(0.005)
                continue
            socks = [self.listener, *self._peers]
            try:
                ready, _, _ = select.select(socks, [], [], 0.02)
            except (OSError, ValueError):
                self._prune()
                continue
            for s in ready:
                if self.frozen:
                    break
                if s is self.listener:
                    self._accept()
                else:
                    self._forward(s)

    def _accept(self) -> None:
        client, _ = self.listener.accept()
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        self._peers[client] = upstream
        self._peers[upstream] = client

    def _forward(self, s: socket.socket) -> None:
        peer = self._peers.get(s)
        if peer is None:
            return
        try:
            data = s.recv(65536)
        except OSError:
            data = b""
        if data:
            try:
                peer.sendall(data)
                return
            except OSError:
                pass
        for x in (s, peer):  # one side closed: close both
            self._peers.pop(x, None)
            try:
                x.close()
            except OSError:
                pass

    def _prune(self) -> None:
        for s in list(self._peers):
            if s.fileno() < 0:
                peer = self._peers.pop(s)
                self._peers.pop(peer, None)
