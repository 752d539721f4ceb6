"""A stand-in for the bot's `POST /alertmanager`: records what Alertmanager delivers over real HTTP.

It listens on 127.0.0.1:<free port> in a thread and keeps every request (path, headers, body,
the status it answered). It can require a bearer token (401 otherwise, checked first) and answer
the next N authorized requests with an error status, to watch Alertmanager retry.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Delivery", "WebhookRecorder"]


@dataclass(frozen=True)
class Delivery:
    """One request as the recorder saw it, and what it answered."""

    method: str
    path: str
    headers: Mapping[str, str]  # names in lower case
    body: bytes
    status: int
    at: float  # time.monotonic() when it arrived

    @property
    def json(self) -> Any:
        """The body parsed as JSON; None when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300


class WebhookRecorder:
    """Records each request; `url` is where to point Alertmanager's webhook receiver."""

    def __init__(self, *, token: str | None = None, path: str = "/alertmanager") -> None:
        self.path = path
        self._token = token
        self._failures: list[int] = []
        self._deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the recorder is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.path}"

    def start(self) -> WebhookRecorder:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
            daemon=True, name="webhook-recorder",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self._server = None

    def __enter__(self) -> WebhookRecorder:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # What to answer --------------------------------------------------------------------------

    def require_token(self, token: str | None) -> None:
        """Answer 401 to requests without `Authorization: Bearer <token>`; None accepts any."""
        with self._lock:
            self._token = token

    def fail_next(self, count: int, status: int = 500) -> None:
        """Answer the next `count` authorized requests with `status`."""
        with self._lock:
            self._failures.extend([status] * count)

    # What arrived ----------------------------------------------------------------------------

    @property
    def deliveries(self) -> list[Delivery]:
        """Every request so far, refused ones included, in order of arrival."""
        with self._lock:
            return list(self._deliveries)

    def notifications(self, status: str | None = None) -> list[dict[str, Any]]:
        """The JSON bodies of accepted deliveries; only `firing` or `resolved` ones if asked."""
        bodies = [d.json for d in self.deliveries if d.accepted and isinstance(d.json, dict)]
        return [b for b in bodies if status is None or b.get("status") == status]

    def reset(self) -> None:
        with self._lock:
            self._deliveries.clear()
            self._failures.clear()

    def _answer(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> int:
        with self._lock:
            if self._token is not None and headers.get("authorization") != f"Bearer {self._token}":
                status = 401
            elif self._failures:
                status = self._failures.pop(0)
            else:
                status = 200
            self._deliveries.append(
                Delivery(method, path, dict(headers), body, status, time.monotonic())
            )
            return status


def _handler(recorder: WebhookRecorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.0: one request per connection, so stopping leaves no kept-alive socket behind.

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            headers = {name.lower(): value for name, value in self.headers.items()}
            status = recorder._answer("POST", self.path, headers, body)
            reply = json.dumps({"ok": 200 <= status < 300}).encode()
            self.send_response(status)
            if status == 401:
                self.send_header("WWW-Authenticate", "Bearer")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the recorded deliveries say it all; stderr noise would only hide failures

    return Handler
