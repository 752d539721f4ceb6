"""The simulated cluster serves TLS as an API server does: the real kubectl, the `kubernetes`
client and any client given its CA talk to it with the kubeconfig it writes; a client that does
not trust its CA is refused; plain HTTP (a debugging mode) gets no token from kubectl."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from simcluster import SimCluster
from tests.packaging.tools import require_tool


def kubectl(kubeconfig: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("kubectl"), "--kubeconfig", kubeconfig,
                           "--request-timeout=20s", *args],
                          capture_output=True, text=True, timeout=60, check=False)


def test_the_kubeconfig_holds_the_ca_and_the_token(sim: SimCluster, tmp_path: Path) -> None:
    config = yaml.safe_load(Path(sim.write_kubeconfig(tmp_path / "kc")).read_text())
    cluster = config["clusters"][0]["cluster"]
    assert cluster["server"] == sim.url and sim.url.startswith("https://127.0.0.1:")
    assert base64.b64decode(cluster["certificate-authority-data"]) == sim.ca_file.read_bytes()
    assert config["users"][0]["user"]["token"] == sim.token


def test_the_real_kubectl_lists_the_demo_world_over_tls(sim: SimCluster, tmp_path: Path) -> None:
    kubeconfig = sim.write_kubeconfig(tmp_path / "kc")
    done = kubectl(kubeconfig, "get", "deployments", "-n", "shop-staging", "-o", "json")
    assert done.returncode == 0, done.stderr
    names = [item["metadata"]["name"] for item in json.loads(done.stdout)["items"]]
    assert names == ["shop-api", "shop-web", "shop-worker"]


def test_a_client_that_does_not_trust_the_ca_is_refused(sim: SimCluster) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{sim.url}/version", timeout=10)
    answer = httpx.get(f"{sim.url}/api/v1/namespaces", verify=sim.ssl_context(), timeout=10,
                       headers={"Authorization": f"Bearer {sim.token}"})
    assert answer.status_code == 200


def test_a_silent_client_does_not_hold_up_the_others(sim: SimCluster) -> None:
    """The handshake runs in the connection's thread: a client that connects and says nothing
    leaves the server accepting others."""
    import socket

    host, port = sim.url.removeprefix("https://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5):
        answer = httpx.get(f"{sim.url}/version", verify=sim.ssl_context(), timeout=10)
    assert answer.status_code == 200


def test_over_plain_http_kubectl_sends_no_token(tmp_path: Path) -> None:
    with SimCluster(seed="empty", tls=False) as plain:
        assert plain.url.startswith("http://")
        kubeconfig = plain.write_kubeconfig(tmp_path / "kc")
        assert "certificate-authority-data" not in Path(kubeconfig).read_text()
        done = kubectl(kubeconfig, "get", "namespaces")
    assert done.returncode != 0
    assert "Unauthorized" in done.stderr or "provide credentials" in done.stderr, done.stderr


def test_the_ca_is_made_for_the_listen_host_too() -> None:
    from simcluster.tls import certificates

    made = certificates("127.0.0.2")
    assert "127.0.0.2" in made.names and "localhost" in made.names
    context = made.server_context()
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
