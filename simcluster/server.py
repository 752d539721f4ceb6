"""HTTP transport for the simulated API: a ThreadingHTTPServer that turns requests into
`dispatch.Request`s and writes responses back, chunked for watch streams; over TLS when given a
server context (the handshake runs in the connection's own thread, so a slow or silent client
never holds up accepting the next)."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .dispatch import Handler, Request, Response

log = logging.getLogger(__name__)


class SimHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], dispatcher: Handler,
                 tls: ssl.SSLContext | None = None) -> None:
        super().__init__(address, SimRequestHandler)
        self.dispatcher = dispatcher
        self.tls = tls

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        if self.tls is None:
            return sock, address
        # Wrapped without the handshake: it happens on the first read, in the handler thread.
        return self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), \
            address

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gives up on the handshake (or never trusted our CA) is not an error.
        log.debug("simcluster connection from %s ended", client_address, exc_info=True)


class SimRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SimHTTPServer

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(30)  # a handshake that never comes does not hold a thread
            self.request.do_handshake()
            self.request.settimeout(None)
        super().setup()
        # Headers and body go out as separate writes; without this, Nagle plus delayed ACKs
        # add ~40 ms to every keep-alive request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("simcluster %s - %s", self.address_string(), format % args)

    def _serve(self, method: str) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(
            method=method,
            path=parts.path,
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            impersonate_groups=tuple(self.headers.get_all("Impersonate-Group") or ()),
        )
        response = self.server.dispatcher.handle(request)
        try:
            self._write(response)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _write(self, response: Response) -> None:
        self.send_response(response.code)
        self.send_header("Content-Type", response.content_type)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.stream is None:
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for chunk in response.stream:
            self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class ServerThread:
    """Owns the listening socket and the thread serving it."""

    def __init__(self, dispatcher: Handler, host: str, port: int,
                 tls: ssl.SSLContext | None = None) -> None:
        self.httpd = SimHTTPServer((host, port), dispatcher, tls)
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="simcluster-http",
                                       kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.httpd.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
