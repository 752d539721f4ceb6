"""The real registry server (Debian's `docker-registry`, distribution v2) for tests, started on
127.0.0.1 with filesystem storage in a temporary directory; images are pushed over its HTTP API
(a config blob and a layer, then the manifest), as `docker push` does.

With `htpasswd` (user, password), it asks for basic auth itself, over TLS with a certificate
from a CA made for the test (`ca_file`). With `tokens`, it asks for bearer tokens from
`TokenService`, a small token server in the test process that signs JWTs (RS256, its
certificate in the `x5c` header, as the registry's `rootcertbundle` trusts it) for anonymous
pulls, or for a user with a password (basic auth to the realm) who may also push.

When the binary is missing the test is skipped (`pytest.fail` with OPSBOT_REQUIRE_REAL=1).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import ssl
import subprocess
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import yaml

from tests.support.prometheus import _free_port, require_binary

__all__ = ["REGISTRY_BIN", "RegistryServer", "TokenService", "registry_holding"]

REGISTRY_BIN = "docker-registry"
SERVICE = "opsbot-test-registry"
ISSUER = "opsbot-test-token-service"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenService:
    """A registry token server: `GET /token?service=&scope=` answers `{"token": ...}`. Anonymous
    callers get pull access; `user`/`password` (basic auth) get pull and push; a wrong password
    gets 401."""

    def __init__(self, workdir: Path, *, user: str, password: str,
                 anonymous_pull: bool = True) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.user, self.password, self.anonymous_pull = user, password, anonymous_pull
        self.requests: list[dict[str, Any]] = []
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        now = datetime.now(UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(self._key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - timedelta(hours=1))
                .not_valid_after(now + timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(self._key, hashes.SHA256()))
        self._der = cert.public_bytes(serialization.Encoding.DER)
        self.cert_file = workdir / "token-signing.crt"
        self.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                service._answer(self)

            def log_message(self, *_: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/token"

    def start(self) -> TokenService:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def token(self, scope: str, *, pusher: bool) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        access = []
        for item in scope.split():
            kind, _, rest = item.partition(":")
            name, _, actions = rest.rpartition(":")
            allowed = [a for a in actions.split(",") if a == "pull" or (pusher and a == "push")]
            access.append({"type": kind, "name": name, "actions": allowed})
        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "x5c": [base64.b64encode(self._der).decode()]}
        claims = {"iss": ISSUER, "sub": self.user if pusher else "", "aud": SERVICE,
                  "exp": now + 300, "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex,
                  "access": access}
        signing = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = self._key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing}.{_b64url(signature)}"

    def _answer(self, request: BaseHTTPRequestHandler) -> None:
        query = parse_qs(urlsplit(request.path).query)
        auth = request.headers.get("Authorization", "")
        user = None
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            if (user, password) != (self.user, self.password):
                request.send_response(401)
                request.send_header("Content-Length", "0")
                request.end_headers()
                return
        self.requests.append({"user": user, "scope": query.get("scope", [""])[0],
                              "service": query.get("service", [""])[0]})
        if user is None and not self.anonymous_pull:
            request.send_response(401)
            request.send_header("Content-Length", "0")
            request.end_headers()
            return
        body = json.dumps({"token": self.token(query.get("scope", [""])[0],
                                               pusher=user is not None)}).encode()
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)


class RegistryServer:
    """`docker-registry serve` on 127.0.0.1 with its storage in `workdir`."""

    def __init__(self, workdir: Path, *, tokens: TokenService | None = None,
                 htpasswd: tuple[str, str] | None = None) -> None:
        self.binary = require_binary(REGISTRY_BIN, "docker-registry")
        self.workdir, self.tokens, self.htpasswd = workdir, tokens, htpasswd
        self.ca_file: Path | None = None
        self.port = _free_port()
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(workdir / "data")},
                        "delete": {"enabled": True}},
            "http": {"addr": f"127.0.0.1:{self.port}", "secret": uuid.uuid4().hex},
        }
        if tokens is not None:
            config["auth"] = {"token": {"realm": tokens.realm, "service": SERVICE,
                                        "issuer": ISSUER,
                                        "rootcertbundle": str(tokens.cert_file)}}
        if htpasswd is not None:
            import trustme

            ca = trustme.CA()
            cert = ca.issue_cert("127.0.0.1")
            self.ca_file = workdir / "ca.pem"
            ca.cert_pem.write_to_path(str(self.ca_file))
            cert.private_key_pem.write_to_path(str(workdir / "tls.key"))
            cert.cert_chain_pems[0].write_to_path(str(workdir / "tls.crt"))
            config["http"]["tls"] = {"certificate": str(workdir / "tls.crt"),
                                     "key": str(workdir / "tls.key")}
            (workdir / "htpasswd").write_text(f"{htpasswd[0]}:{_bcrypt(htpasswd[1])}\n")
            config["auth"] = {"htpasswd": {"realm": "opsbot-test",
                                           "path": str(workdir / "htpasswd")}}
        self.config_file = workdir / "registry.yml"
        self.config_file.write_text(yaml.safe_dump(config))
        self.log_file = workdir / "registry.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.htpasswd else 'http'}://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> RegistryServer:
        log = self.log_file.open("wb")
        self._process = subprocess.Popen([self.binary, "serve", str(self.config_file)],
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {self.log_file.read_text()}")
            try:
                answer = httpx.get(f"{self.url}/v2/", timeout=1, verify=self._verify())
                if answer.status_code in (200, 401):
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"docker-registry did not start: {self.log_file.read_text()}")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def _verify(self) -> ssl.SSLContext | bool:
        return ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else True

    def push(self, repository: str, tag: str) -> str:
        """Push a small image (one layer) as `repository:tag`; returns the manifest's digest."""
        headers = {}
        if self.tokens is not None:
            token = self.tokens.token(f"repository:{repository}:pull,push", pusher=True)
            headers["Authorization"] = f"Bearer {token}"
        auth = httpx.BasicAuth(*self.htpasswd) if self.htpasswd else None
        with httpx.Client(base_url=self.url, headers=headers, timeout=10, auth=auth,
                          verify=self._verify()) as http:
            layer = _layer(f"{repository}:{tag}")
            diff_id = "sha256:" + hashlib.sha256(gzip.decompress(layer)).hexdigest()
            config = json.dumps({"architecture": "amd64", "os": "linux",
                                 "config": {"Cmd": ["/hello"]},
                                 "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
            descriptors = []
            for blob, media_type in ((config, "application/vnd.oci.image.config.v1+json"),
                                     (layer, "application/vnd.oci.image.layer.v1.tar+gzip")):
                digest = "sha256:" + hashlib.sha256(blob).hexdigest()
                started = http.post(f"/v2/{repository}/blobs/uploads/")
                assert started.status_code == 202, started.text
                location = urljoin(self.url, started.headers["Location"])
                joiner = "&" if "?" in location else "?"
                done = http.put(f"{location}{joiner}digest={digest}", content=blob,
                                headers={"Content-Type": "application/octet-stream"})
                assert done.status_code == 201, done.text
                descriptors.append({"mediaType": media_type, "digest": digest,
                                    "size": len(blob)})
            manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                   "config": descriptors[0], "layers": descriptors[1:]}).encode()
            put = http.put(f"/v2/{repository}/manifests/{tag}", content=manifest,
                           headers={"Content-Type": OCI_MANIFEST})
            assert put.status_code == 201, put.text
            return "sha256:" + hashlib.sha256(manifest).hexdigest()


def _bcrypt(password: str) -> str:
    """A bcrypt hash, the only kind the registry's htpasswd takes (Python's crypt module, on
    libxcrypt; gone in Python 3.13, where the test is skipped)."""
    import pytest

    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt
    except ImportError:
        pytest.skip("no bcrypt here for the registry's htpasswd (Python's crypt module is gone)")
    hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))
    if not hashed or not hashed.startswith("$2"):
        pytest.skip("the C library's crypt() makes no bcrypt hashes")
    return hashed


def _layer(text: str) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = f"hello from {text}\n".encode()
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mtime = len(data), 0
        tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def registry_holding(directory: Path, *images: tuple[str, str]) -> Iterator[RegistryServer]:
    """The real registry, anonymous, storing in `directory` (made here), with each
    (repository, tag) pushed; for a fixture to yield from. It stops after."""
    directory.mkdir(exist_ok=True)
    server = RegistryServer(directory).start()
    try:
        for repository, tag in images:
            server.push(repository, tag)
        yield server
    finally:
        server.stop()
