"""A loopback TCP proxy that can be frozen: the database that accepts connections but never
answers.

While frozen it still accepts connections and keeps every one open, but forwards nothing
either way; what arrived meanwhile is forwarded once thawed (a peer that gave up has closed
its side by then, and the proxy closes the other).
"""

from __future__ import annotations

import contextlib
import socket
import threading

from sqlalchemy.engine import make_url

__all__ = ["FreezableProxy"]


class FreezableProxy:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self._upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._flowing = threading.Event()
        self._flowing.set()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stopped = False

    @classmethod
    def in_front_of(cls, url: str) -> tuple[FreezableProxy, str]:
        """A started proxy to the database `url` names, and the URL that goes through it."""
        parsed = make_url(url)
        proxy = cls((parsed.host or "127.0.0.1", parsed.port or 5432)).start()
        return proxy, parsed.set(port=proxy.port).render_as_string(hide_password=False)

    def start(self) -> FreezableProxy:
        threading.Thread(target=self._accept, name=f"proxy-{self.port}", daemon=True).start()
        return self

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def stop(self) -> None:
        """Unreachable from now on: no new connection is taken and the open ones are cut."""
        self._flowing.set()
        self._stopped = True
        # close() alone does not wake a thread blocked in accept(), which would take one more
        # connection; shutdown() does.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # stopped
            if self._stopped:
                client.close()
                return
            try:
                server = socket.create_connection(self._upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._stopped:  # stopped while connecting upstream
                    client.close()
                    server.close()
                    return
                self._sockets += [client, server]
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self._flowing.wait()
                target.sendall(data)
        except OSError:
            pass
        finally:
            self._flowing.wait()
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
