"""TLS as an API server serves it: a CA made for this process and a serving certificate for the
loopback names, so kubectl, helm and client-go (which send a bearer token only over TLS) and
opsbot's own client talk to the simulation as they would to a cluster.

The CA and certificate are made once per process and set of names (a few tens of milliseconds
with trustme, reused by every simulated cluster a test run starts). trustme, and through it
`cryptography`, is imported here only: `opsbot serve` never loads it.
"""

from __future__ import annotations

import base64
import functools
import ipaddress
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Certificates", "certificates"]

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class Certificates:
    """A CA (its PEM, for kubeconfigs and clients) and a serving certificate for `names`."""

    names: tuple[str, ...]
    ca_pem: bytes
    chain_pem: bytes  # the serving certificate, then the CA
    key_pem: bytes
    directory: Path

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_data(self) -> str:
        """`certificate-authority-data` of a kubeconfig: the CA's PEM, base64."""
        return base64.b64encode(self.ca_pem).decode()

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.directory / "server.pem", self.directory / "server-key.pem")
        # What client-go and kubectl negotiate over HTTPS; Python's HTTP/1.1 server speaks it.
        context.set_alpn_protocols(["http/1.1"])
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client context trusting this CA only (for tests and tools that call the API)."""
        return ssl.create_default_context(cadata=self.ca_pem.decode())


def certificates(host: str) -> Certificates:
    """The certificates for a cluster listening on `host` (the loopback names always)."""
    names = tuple(dict.fromkeys((*LOOPBACK, *([host] if host not in ("", "0.0.0.0", "::")
                                              else []))))
    return _make(names)


@functools.cache
def _make(names: tuple[str, ...]) -> Certificates:
    import trustme  # only the simulation serves TLS: opsbot itself never imports it

    ca = trustme.CA(organization_name="opsbot simcluster")
    sans = [name for name in names if _is_name(name)]
    server = ca.issue_cert(*sans, common_name="simcluster")
    directory = Path(tempfile.mkdtemp(prefix="opsbot-simcluster-tls-"))
    ca_pem = ca.cert_pem.bytes()
    chain = b"".join(blob.bytes() for blob in server.cert_chain_pems)
    key = server.private_key_pem.bytes()
    (directory / "ca.pem").write_bytes(ca_pem)
    (directory / "server.pem").write_bytes(chain)
    key_file = directory / "server-key.pem"
    key_file.touch(mode=0o600)
    key_file.write_bytes(key)
    return Certificates(names, ca_pem, chain, key, directory)


def _is_name(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return bool(name) and all(part.isalnum() or "-" in part for part in name.split("."))
    return True
