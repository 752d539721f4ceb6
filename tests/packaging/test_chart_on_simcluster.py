"""opsbot's chart installed with the real helm onto the simulated cluster, over TLS: install,
upgrade, rollback and uninstall succeed, helm's release Secrets (which helm sends in Kubernetes'
protobuf encoding) are stored, and every object of the chart is accepted; then removed, but the
PersistentVolumeClaim the chart keeps. No container runs: the simulation schedules no image.

helm's client-side OpenAPI validation is turned off (`--disable-openapi-validation`): the
simulation serves no OpenAPI document (docs/simcluster.md)."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from simcluster import SimCluster
from tests.packaging.tools import CHART, require_tool, run

NS = "opsbot"
NO_OPENAPI = "--disable-openapi-validation"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[SimCluster, str]]:
    with SimCluster(seed="empty") as sim:
        kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
        created = run([require_tool("kubectl"), "--kubeconfig", kubeconfig, "create",
                       "namespace", NS])
        assert created.returncode == 0, created.stderr
        yield sim, kubeconfig


def helm(kubeconfig: str, *args: str) -> str:
    done = run([require_tool("helm"), "--kubeconfig", kubeconfig, "--namespace", NS, *args],
               timeout=180)
    assert done.returncode == 0, done.stderr
    return done.stdout


def objects(sim: SimCluster) -> set[str]:
    """kind/name of what the chart made: objects in its namespace and cluster-scoped ones named
    after it (events, endpoints, pods and ReplicaSets are the controllers')."""
    found = set()
    for key in sim.snapshot():
        _group, _version, kind, namespace, name = key.split("/", 4)
        if kind in ("Event", "Endpoints", "Pod", "ReplicaSet", "Namespace", "Secret"):
            continue
        if namespace == NS or (not namespace and name.startswith("opsbot")):
            found.add(f"{kind}/{name}")
    return found


def releases(sim: SimCluster) -> dict[int, str]:
    """helm's release Secrets: revision -> status, read as helm stores them."""
    out = {}
    for key, obj in sim.snapshot().items():
        if "/Secret/" in key and obj.get("type") == "helm.sh/release.v1":
            release = json.loads(gzip.decompress(base64.b64decode(
                base64.b64decode(obj["data"]["release"]))))
            out[int(release["version"])] = release["info"]["status"]
    return out


def test_install_upgrade_rollback_uninstall(cluster: tuple[SimCluster, str]) -> None:
    sim, kubeconfig = cluster
    helm(kubeconfig, "install", "opsbot", str(CHART), NO_OPENAPI, "--wait=false")
    made = objects(sim)
    for expected in ("Deployment/opsbot", "Service/opsbot", "ServiceAccount/opsbot",
                     "ConfigMap/opsbot", "PersistentVolumeClaim/opsbot-data",
                     "NetworkPolicy/opsbot", "Role/opsbot", "RoleBinding/opsbot",
                     "Role/opsbot-leader-election", "ClusterRole/opsbot-opsbot",
                     "ClusterRoleBinding/opsbot-opsbot"):
        assert expected in made, sorted(made)
    assert releases(sim) == {1: "deployed"}

    helm(kubeconfig, "upgrade", "opsbot", str(CHART), NO_OPENAPI,
         "--set-string", "podAnnotations.rev=2")
    deployment = sim.get(f"/apis/apps/v1/namespaces/{NS}/deployments/opsbot")
    assert deployment is not None
    assert deployment["spec"]["template"]["metadata"]["annotations"]["rev"] == "2"
    assert releases(sim) == {1: "superseded", 2: "deployed"}

    helm(kubeconfig, "rollback", "opsbot", "1")
    deployment = sim.get(f"/apis/apps/v1/namespaces/{NS}/deployments/opsbot")
    assert deployment is not None
    assert "rev" not in deployment["spec"]["template"]["metadata"].get("annotations", {})
    assert releases(sim) == {1: "superseded", 2: "superseded", 3: "deployed"}
    history = helm(kubeconfig, "history", "opsbot")
    assert "Rollback to 1" in history
    assert "opsbot" in helm(kubeconfig, "list")

    uninstalled = helm(kubeconfig, "uninstall", "opsbot")
    assert "kept due to the resource policy" in uninstalled
    assert objects(sim) == {"PersistentVolumeClaim/opsbot-data"}
    assert releases(sim) == {}
