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

from bot.config import Settings, settings_from_mapping
from bot.registry import Registry
from bot.services import Services
from simcluster import SimCluster
from simcluster.routing import Route
from tests.conftest import dispatch
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


# -- StatefulSets: ControllerRevisions ---------------------------------------------------------

DB: Obj = {
    "apiVersion": "apps/v1", "kind": "StatefulSet",
    "metadata": {"name": "shop-db", "namespace": NS, "labels": {"app": "shop-db"}},
    "spec": {"replicas": 2, "serviceName": "shop-db",
             "selector": {"matchLabels": {"app": "shop-db"}},
             "template": {"metadata": {"labels": {"app": "shop-db"}}, "spec": {"containers": [
                 {"name": "db", "image": "registry.example.com/shop/db:16.4"}]}}}}
DB_APP: Obj = {"kind": "StatefulSet", "container": "db", "image": "registry.example.com/shop/db",
               "replicas": {"min": 1, "max": 3}, "environments": ["staging"],
               "deploy": {"timeout_seconds": 30}}


def statefulset_shape(sim: SimCluster) -> Obj:
    """The StatefulSet's template and its ControllerRevisions (revision, the image its patch
    sets), without uids and times; a restart's revision name carries the time of the
    restart, so revisions are compared by number and content."""
    sim.wait_idle()
    sts = sim.get(f"/apis/apps/v1/namespaces/{NS}/statefulsets/shop-db")
    assert sts is not None
    template = copy.deepcopy(sts["spec"]["template"])
    if template["metadata"].get("creationTimestamp", "") is None:
        del template["metadata"]["creationTimestamp"]
    annotations = template["metadata"].get("annotations", {})
    if RESTARTED in annotations:
        annotations[RESTARTED] = "<set>"
    listed = (sim.get(f"/apis/apps/v1/namespaces/{NS}/controllerrevisions") or {})["items"]
    revisions = sorted(
        (cr["revision"], cr["data"]["spec"]["template"]["spec"]["containers"][0]["image"])
        for cr in listed if cr["metadata"]["name"].startswith("shop-db-"))
    return {"template": template, "replicas": sts["spec"]["replicas"], "revisions": revisions,
            "current": sts["status"].get("currentRevision") == sts["status"].get(
                "updateRevision")}


async def test_statefulset_changes_agree_with_kubectl(
    sim: SimCluster, settings: Settings, twin: tuple[SimCluster, str],
) -> None:
    """set image (a deploy), rollout restart, rollout undo --to-revision (rollback --to) and
    scale: the same template and ControllerRevisions after each."""
    other, kubeconfig = twin
    for cluster in (sim, other):  # the same StatefulSet in both, made as an operator would
        cluster.api.create(Route("apps", "v1", "statefulsets", NS), copy.deepcopy(DB))
        cluster.wait_idle()
    raw = settings.model_dump(mode="json", exclude_none=True)
    raw["apps"]["shop-db"] = DB_APP
    services = Services.build(settings_from_mapping(raw), registry=Registry.builtin())
    try:
        assert statefulset_shape(sim) == statefulset_shape(other)
        steps = [(["set", "image", "statefulset/shop-db",
                   "db=registry.example.com/shop/db:16.5"], "deploy shop-db 16.5"),
                 (["rollout", "restart", "statefulset/shop-db"], "restart shop-db"),
                 (["rollout", "undo", "statefulset/shop-db", "--to-revision=1"],
                  "rollback shop-db --to 1"),
                 (["scale", "statefulset/shop-db", "--replicas=3"], "scale shop-db 3")]
        for args, command in steps:
            kubectl(kubeconfig, *args)
            outcome, reporter = await dispatch(services, command)
            assert outcome.status == "succeeded", (command, reporter.final.summary)
            assert statefulset_shape(sim) == statefulset_shape(other), command
    finally:
        services.close()
