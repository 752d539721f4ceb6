"""Differential tests: on two identical simulated clusters (the demo world), the same change made
with the real kubectl on one and with opsbot on the other leaves the same objects: the pod
template, the revision numbers and annotations, and the ReplicaSets scaled as they are. kubectl
is the reference; what legitimately differs (uids, timestamps, resource versions, the time in
`restartedAt`) is set aside, each for the reason given where it is."""

from __future__ import annotations

import copy
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simcluster import SimCluster
from tests.handlers.conftest import Run
from tests.packaging.tools import require_tool

NS = "shop-staging"
REVISION = "deployment.kubernetes.io/revision"
RESTARTED = "kubectl.kubernetes.io/restartedAt"
CHANGE_CAUSE = "kubernetes.io/change-cause"
Obj = dict[str, Any]


@pytest.fixture
def twin(tmp_path: Path) -> Iterator[tuple[SimCluster, str]]:
    """The reference cluster, for kubectl: the same demo world (the same build, names and
    uids) as the `sim` opsbot drives."""
    with SimCluster(seed="demo") as other:
        yield other, other.write_kubeconfig(tmp_path / "twin.kubeconfig")


def kubectl(kubeconfig: str, *args: str) -> None:
    done = subprocess.run([require_tool("kubectl"), "--kubeconfig", kubeconfig,
                           "--request-timeout=20s", "-n", NS, *args],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def shape(sim: SimCluster, app: str) -> Obj:
    """What a change leaves, without what differs by nature between two clusters."""
    sim.wait_idle()
    deployment = sim.get(f"/apis/apps/v1/namespaces/{NS}/deployments/{app}")
    assert deployment is not None
    template = copy.deepcopy(deployment["spec"]["template"])
    # kubectl sends a pod template's unset creationTimestamp as null (Go's serialization, which
    # a real API server also answers with); the simulation keeps what each client sent.
    if template["metadata"].get("creationTimestamp", "") is None:
        del template["metadata"]["creationTimestamp"]
    annotations = template["metadata"].get("annotations", {})
    if RESTARTED in annotations:  # the time of the restart: only that it is set, and its form
        assert annotations[RESTARTED].endswith(("Z", "+00:00")), annotations[RESTARTED]
        annotations[RESTARTED] = "<set>"
    replica_sets = (sim.get(f"/apis/apps/v1/namespaces/{NS}/replicasets") or {})["items"]
    ours = [rs for rs in replica_sets
            if any(o.get("name") == app for o in rs["metadata"].get("ownerReferences", []))]
    return {
        "template": template,
        "replicas": deployment["spec"]["replicas"],
        # opsbot records who changed what, and in which execution, where `rollout history`
        # shows it (kubectl sets no change-cause without the deprecated --record): apart.
        "annotations": {k: v for k, v in deployment["metadata"].get("annotations", {}).items()
                        if k != CHANGE_CAUSE},
        "change_cause": deployment["metadata"].get("annotations", {}).get(CHANGE_CAUSE),
        # By revision: a restart's ReplicaSet name carries the template hash, which carries the
        # time of the restart.
        "replicasets": sorted(
            (rs["metadata"]["annotations"][REVISION], rs["spec"]["replicas"],
             rs["spec"]["template"]["spec"]["containers"][0]["image"]) for rs in ours),
    }


async def test_rollback_to_a_revision_agrees_with_rollout_undo(
    sim: SimCluster, run: Run, twin: tuple[SimCluster, str],
) -> None:
    other, kubeconfig = twin
    assert shape(sim, "shop-api") == shape(other, "shop-api")  # the same world to start with
    kubectl(kubeconfig, "rollout", "undo", "deployment/shop-api", "--to-revision=1")
    outcome, reporter = await run("rollback shop-api --to 1")
    assert outcome.status == "succeeded", reporter.final.summary
    assert shape(sim, "shop-api") == shape(other, "shop-api")


async def test_scale_agrees_with_kubectl_scale(
    sim: SimCluster, run: Run, twin: tuple[SimCluster, str],
) -> None:
    other, kubeconfig = twin
    kubectl(kubeconfig, "scale", "deployment/shop-api", "--replicas=5")
    outcome, reporter = await run("scale shop-api 5")
    assert outcome.status == "succeeded", reporter.final.summary
    assert shape(sim, "shop-api") == shape(other, "shop-api")


async def test_restart_agrees_with_rollout_restart(
    sim: SimCluster, run: Run, twin: tuple[SimCluster, str],
) -> None:
    other, kubeconfig = twin
    kubectl(kubeconfig, "rollout", "restart", "deployment/shop-web")
    outcome, reporter = await run("restart shop-web")
    assert outcome.status == "succeeded", reporter.final.summary
    assert shape(sim, "shop-web") == shape(other, "shop-web")


async def test_a_deploys_apply_agrees_with_set_image(
    sim: SimCluster, run: Run, twin: tuple[SimCluster, str],
) -> None:
    other, kubeconfig = twin
    kubectl(kubeconfig, "set", "image", "deployment/shop-api",
            "api=registry.example.com/shop/api:1.5.0")
    outcome, reporter = await run("deploy shop-api 1.5.0")
    assert outcome.status == "succeeded", reporter.final.summary
    ours, reference = shape(sim, "shop-api"), shape(other, "shop-api")
    assert ours.pop("change_cause").startswith(
        "opsbot: deploy registry.example.com/shop/api:1.5.0 by U0ALICE (ex-")
    assert reference.pop("change_cause") is None
    assert ours == reference
