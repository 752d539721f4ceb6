"""The demo's stand-in registry answers manifest lookups as the real registry server does: the
same lookups asked of both (Debian's docker-registry, with the same image pushed) get the same
status, headers that matter and error codes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bot.oci import MANIFEST_TYPES
from simcluster.registry import RegistryStandIn
from tests.support.oci_registry import RegistryServer, registry_holding

ACCEPT = {"Accept": ", ".join(MANIFEST_TYPES)}
LOOKUPS = [("GET", "/v2/"), ("HEAD", "/v2/shop/api/manifests/1.5.0"),
           ("GET", "/v2/shop/api/manifests/1.5.0"), ("HEAD", "/v2/shop/api/manifests/9.9.9"),
           ("GET", "/v2/shop/api/manifests/9.9.9"), ("GET", "/v2/shop/nope/manifests/1.0"),
           ("HEAD", "/v2/shop/api/manifests/sha256:" + "0" * 64)]


@pytest.fixture
def real(tmp_path: Path) -> Iterator[RegistryServer]:
    yield from registry_holding(tmp_path, ("shop/api", "1.5.0"))


@pytest.fixture
def standin() -> Iterator[RegistryStandIn]:
    server = RegistryStandIn({"shop/api": ["1.5.0"]}).start()
    try:
        yield server
    finally:
        server.stop()


def shape(response: httpx.Response) -> tuple[object, ...]:
    """What a client reads of an answer: status, the digest header (and, for a GET, whether it
    is the body's digest), the content type of a manifest, error codes, the API version."""
    digest = response.headers.get("Docker-Content-Digest")
    found = response.status_code == 200 and "/manifests/" in str(response.url)
    codes: list[str] = []
    if response.content and response.status_code != 200:
        codes = [e["code"] for e in json.loads(response.content)["errors"]]
    matches = None
    if digest and response.request.method == "GET":
        matches = digest == "sha256:" + hashlib.sha256(response.content).hexdigest()
    content_type = response.headers.get("Content-Type", "").split(";")[0] if found else None
    return (response.status_code, digest is not None, matches, content_type, codes,
            response.headers.get("Docker-Distribution-API-Version"))


def test_the_standin_answers_as_the_real_registry(real: RegistryServer,
                                                  standin: RegistryStandIn) -> None:
    with httpx.Client(headers=ACCEPT, timeout=10) as http:
        for method, path in LOOKUPS:
            theirs = http.request(method, real.url + path)
            ours = http.request(method, standin.url + path)
            assert shape(ours) == shape(theirs), (method, path)
    # The stand-in's HEAD digest is its manifest's, as the registry's is.
    with httpx.Client(headers=ACCEPT, timeout=10) as http:
        head = http.head(standin.url + "/v2/shop/api/manifests/1.5.0")
        by_digest = http.head(standin.url + "/v2/shop/api/manifests/"
                              + head.headers["Docker-Content-Digest"])
        assert by_digest.status_code == 200
