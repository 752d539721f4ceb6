"""A stand-in image registry for the demo world: the OCI distribution API's manifest lookups
(`GET /v2/`, `HEAD`/`GET /v2/<name>/manifests/<reference>`) answered as a registry answers them,
for the images the demo world knows, on a plain-HTTP loopback listener of its own (a registry
is not the API server). Anonymous; nothing is stored or pushed. `opsbot demo` points the demo
configuration's `registries.registry.example.com` at it, so a deploy of a tag that was never
built is refused as it would be against a real registry."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["DEMO_IMAGES", "RegistryStandIn"]

# registry.example.com's repositories and tags in the demo world: the releases the demo's
# history ran or can deploy (1.6.0 is the bad release verification catches).
DEMO_IMAGES: dict[str, tuple[str, ...]] = {
    "shop/api": ("1.2.0", "1.3.0", "1.4.0", "1.5.0", "1.6.0"),
    "shop/web": ("1.2.0", "1.3.0", "1.4.0", "1.5.0", "1.6.0", "2.0.0", "2.1.0", "2.2.0"),
    "shop/worker": ("1.2.0", "1.3.0", "1.4.0", "1.5.0", "1.6.0"),
}
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_PATH = re.compile(r"/v2/(?P<name>[a-z0-9._/-]+)/manifests/(?P<reference>[A-Za-z0-9_.:=+-]+)")


class RegistryStandIn:
    """Answers manifest lookups for `images` (repository -> tags) on 127.0.0.1."""

    def __init__(self, images: dict[str, Iterable[str]] | None = None,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.images = {repo: set(tags) for repo, tags in (images or DEMO_IMAGES).items()}
        self.asked: list[tuple[str, str, str]] = []  # (method, repository, reference)
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                standin._answer(self, "GET")

            def do_HEAD(self) -> None:
                standin._answer(self, "HEAD")

            def log_message(self, *_: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        name="simcluster-registry",
                                        kwargs={"poll_interval": 0.05})

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> RegistryStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def manifest(self, repository: str, tag: str) -> bytes:
        """The (stable, made-up) manifest of an image: its digest is what a HEAD answers."""
        layer = hashlib.sha256(f"{repository}:{tag}".encode()).hexdigest()
        return json.dumps({
            "schemaVersion": 2, "mediaType": MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": f"sha256:{hashlib.sha256(layer.encode()).hexdigest()}",
                       "size": 512},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": f"sha256:{layer}", "size": 4096}],
        }, sort_keys=True).encode()

    def _answer(self, request: BaseHTTPRequestHandler, method: str) -> None:
        path = request.path.split("?", 1)[0]
        if path in ("/v2", "/v2/"):
            return _send(request, method, 200, b"{}", "application/json")
        match = _PATH.fullmatch(path)
        if match is None:
            return _error(request, method, 404, "NOT_FOUND", "no such route")
        name, reference = match["name"], match["reference"]
        self.asked.append((method, name, reference))
        # An unknown repository is an unknown manifest too, as distribution 2.8 answers it.
        for tag in self.images.get(name, ()):
            body = self.manifest(name, tag)
            digest = f"sha256:{hashlib.sha256(body).hexdigest()}"
            if reference in (tag, digest):
                return _send(request, method, 200, body, MANIFEST,
                             {"Docker-Content-Digest": digest})
        return _error(request, method, 404, "MANIFEST_UNKNOWN", "manifest unknown")


def _error(request: BaseHTTPRequestHandler, method: str, status: int, code: str,
           message: str) -> None:
    body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
    _send(request, method, status, body, "application/json")


def _send(request: BaseHTTPRequestHandler, method: str, status: int, body: bytes,
          content_type: str, headers: dict[str, str] | None = None) -> None:
    request.send_response(status)
    request.send_header("Content-Type", content_type)
    request.send_header("Content-Length", str(len(body)))
    request.send_header("Docker-Distribution-API-Version", "registry/2.0")
    for name, value in (headers or {}).items():
        request.send_header(name, value)
    request.end_headers()
    if method != "HEAD":
        request.wfile.write(body)
