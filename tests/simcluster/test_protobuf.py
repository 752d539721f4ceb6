"""Request bodies in Kubernetes' protobuf encoding: a Secret or ConfigMap is read as its JSON
form (helm stores releases so, see tests/packaging/test_chart_on_simcluster.py); a kind the
simulation has no message for is refused with 415, as an API server refuses what it cannot
decode."""

from __future__ import annotations

import httpx

from simcluster import SimCluster
from simcluster.protobuf import MEDIA_TYPE


def _field(number: int, payload: bytes) -> bytes:
    key = (number << 3) | 2
    return bytes([key]) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def envelope(api_version: str, kind: str, message: bytes) -> bytes:
    type_meta = _field(1, api_version.encode()) + _field(2, kind.encode())
    return b"k8s\x00" + _field(1, type_meta) + _field(2, message)


def post(sim: SimCluster, path: str, body: bytes) -> httpx.Response:
    return httpx.post(f"{sim.url}{path}", content=body, verify=sim.ssl_context(), timeout=10,
                      headers={"Authorization": f"Bearer {sim.token}",
                               "Content-Type": MEDIA_TYPE, "Accept": "application/json"})


def test_a_secret_in_protobuf_is_stored_as_sent(empty_sim: SimCluster) -> None:
    meta = (_field(1, b"release-1") + _field(11, _field(1, b"owner") + _field(2, b"helm")))
    secret = (_field(1, meta) + _field(2, _field(1, b"release") + _field(2, b"\x00\xffbytes"))
              + _field(3, b"helm.sh/release.v1"))
    answer = post(empty_sim, "/api/v1/namespaces/default/secrets",
                  envelope("v1", "Secret", secret))
    assert answer.status_code == 201, answer.text
    stored = empty_sim.get("/api/v1/namespaces/default/secrets/release-1")
    assert stored is not None
    assert stored["type"] == "helm.sh/release.v1"
    assert stored["metadata"]["labels"] == {"owner": "helm"}
    assert stored["data"] == {"release": "AP9ieXRlcw=="}


def test_a_kind_without_a_message_is_refused_with_415(empty_sim: SimCluster) -> None:
    answer = post(empty_sim, "/api/v1/namespaces/default/pods",
                  envelope("v1", "Pod", _field(1, _field(1, b"p"))))
    assert answer.status_code == 415
    assert answer.json()["reason"] == "UnsupportedMediaType"
    assert "Pod (v1) in protobuf is not served" in answer.json()["message"]
    garbled = post(empty_sim, "/api/v1/namespaces/default/secrets", b"\xe1not protobuf")
    assert garbled.status_code == 415
