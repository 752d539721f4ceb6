"""The Argo Rollouts controller through the real client's CustomObjectsApi: the first template
is stable at once; a new one walks the canary steps (setWeight, indefinite and timed pauses),
is promoted, aborted, undone, promoted fully, and stalls when its pods never become ready."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from simcluster import SimCluster

from .helpers import raw_patch

NS, NAME = "shop-staging", "shop-canary"
IMAGE = "registry.example.com/shop/canary"
ARGS = ("argoproj.io", "v1alpha1", NS, "rollouts")
HASH = "rollouts-pod-template-hash"
REVISION = "rollout.argoproj.io/revision"
STEPS = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}, {"pause": {"duration": "10s"}}]


def rollout(replicas: int = 5, steps: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": NAME, "labels": {"app": NAME}},
        "spec": {
            "replicas": replicas, "revisionHistoryLimit": 3,
            "selector": {"matchLabels": {"app": NAME}},
            "template": {"metadata": {"labels": {"app": NAME}},
                         "spec": {"containers": [{"name": "app", "image": f"{IMAGE}:1.0.0"}]}},
            "strategy": {"canary": {"steps": STEPS if steps is None else steps}},
        },
    }


@pytest.fixture
def custom(kube_api_client: client.ApiClient, sim: SimCluster) -> client.CustomObjectsApi:
    api = client.CustomObjectsApi(kube_api_client)
    api.create_namespaced_custom_object(*ARGS, rollout())
    sim.wait_idle()
    return api


def get(custom: client.CustomObjectsApi) -> dict[str, Any]:
    obj: dict[str, Any] = custom.get_namespaced_custom_object(*ARGS, NAME)
    return obj


def replica_sets(apps: client.AppsV1Api) -> dict[int, Any]:
    """The Rollout's ReplicaSets by revision."""
    items = apps.list_namespaced_replica_set(NS, label_selector=f"app={NAME}").items
    return {int(rs.metadata.annotations[REVISION]): rs for rs in items}


def set_image(custom: client.CustomObjectsApi, tag: str) -> None:
    containers = get(custom)["spec"]["template"]["spec"]["containers"]
    containers[0]["image"] = f"{IMAGE}:{tag}"
    custom.patch_namespaced_custom_object(
        *ARGS, NAME, {"spec": {"template": {"spec": {"containers": containers}}}})


def promote(custom: client.CustomObjectsApi) -> None:
    """What `kubectl argo rollouts promote` sends for a rollout paused at a canary step."""
    custom.patch_namespaced_custom_object_status(*ARGS, NAME, {"status": {"pauseConditions": None}})


def test_first_template_is_stable_at_once(custom: client.CustomObjectsApi,
                                          apps: client.AppsV1Api) -> None:
    ro = get(custom)
    status = ro["status"]
    assert status["phase"] == "Healthy" and "message" not in status
    assert status["stableRS"] == status["currentPodHash"]
    assert status["currentStepIndex"] == len(STEPS)
    assert (status["replicas"], status["availableReplicas"]) == (5, 5)
    assert status["observedGeneration"] == str(ro["metadata"]["generation"])
    assert status["selector"] == f"app={NAME}"
    assert ro["metadata"]["annotations"][REVISION] == "1"
    (rs,) = replica_sets(apps).values()
    assert rs.metadata.name == f"{NAME}-{status['currentPodHash']}"
    assert rs.metadata.labels[HASH] == status["currentPodHash"]
    assert rs.metadata.owner_references[0].kind == "Rollout"
    assert rs.spec.replicas == 5


def test_canary_steps_pause_promote_and_complete(custom: client.CustomObjectsApi,
                                                 apps: client.AppsV1Api,
                                                 sim: SimCluster) -> None:
    stable = get(custom)["status"]["stableRS"]
    set_image(custom, "1.1.0")
    sim.wait_idle()
    status = get(custom)["status"]
    assert status["phase"] == "Paused" and status["message"] == "CanaryPauseStep"
    assert status["currentStepIndex"] == 1
    assert [c["reason"] for c in status["pauseConditions"]] == ["CanaryPauseStep"]
    assert status["controllerPause"] is True
    assert status["stableRS"] == stable != status["currentPodHash"]
    sets = replica_sets(apps)
    assert (sets[1].spec.replicas, sets[2].spec.replicas) == (4, 1)
    assert get(custom)["metadata"]["annotations"][REVISION] == "2"

    promote(custom)
    sim.wait_idle()
    status = get(custom)["status"]
    assert status["currentStepIndex"] == 3 and status["phase"] == "Paused"
    sets = replica_sets(apps)
    assert (sets[1].spec.replicas, sets[2].spec.replicas) == (2, 3)

    sim.advance(11)  # the timed pause
    sim.wait_idle()
    status = get(custom)["status"]
    assert status["phase"] == "Healthy"
    assert status["stableRS"] == status["currentPodHash"] != stable
    assert status["currentStepIndex"] == 4 and "pauseConditions" not in status
    sets = replica_sets(apps)
    assert (sets[1].spec.replicas, sets[2].spec.replicas) == (0, 5)


def test_abort_returns_to_stable_and_undo_clears_it(custom: client.CustomObjectsApi,
                                                    apps: client.AppsV1Api,
                                                    sim: SimCluster) -> None:
    before = get(custom)
    set_image(custom, "1.1.0")
    sim.wait_idle()
    custom.patch_namespaced_custom_object_status(*ARGS, NAME, {"status": {"abort": True}})
    sim.wait_idle()
    ro = get(custom)
    status = ro["status"]
    assert status["phase"] == "Degraded"
    assert status["message"] == "RolloutAborted: Rollout aborted update to revision 2"
    assert status["stableRS"] == before["status"]["stableRS"]
    assert status["abort"] is True and status["abortedAt"]
    sets = replica_sets(apps)
    assert (sets[1].spec.replicas, sets[2].spec.replicas) == (5, 0)
    assert ro["spec"]["template"]["spec"]["containers"][0]["image"] == f"{IMAGE}:1.1.0"

    set_image(custom, "1.0.0")  # the template back to the stable one
    sim.wait_idle()
    status = get(custom)["status"]
    assert status["phase"] == "Healthy" and "abort" not in status
    assert status["currentPodHash"] == before["status"]["stableRS"]


def test_undo_reuses_the_replicaset_and_renumbers_it(custom: client.CustomObjectsApi,
                                                     apps: client.AppsV1Api,
                                                     kube_api_client: client.ApiClient,
                                                     sim: SimCluster) -> None:
    set_image(custom, "1.1.0")
    sim.wait_idle()
    custom.patch_namespaced_custom_object_status(*ARGS, NAME, {"status": {"promoteFull": True}})
    sim.wait_idle()
    assert get(custom)["status"]["phase"] == "Healthy"
    # `kubectl argo rollouts undo`: revision 1's template (hash label removed), as a JSON patch
    template = kube_api_client.sanitize_for_serialization(replica_sets(apps)[1].spec.template)
    del template["metadata"]["labels"][HASH]
    raw_patch(kube_api_client, f"/apis/argoproj.io/v1alpha1/namespaces/{NS}/rollouts/{NAME}",
              [{"op": "replace", "path": "/spec/template", "value": template}],
              "application/json-patch+json")
    sim.wait_idle()
    sets = replica_sets(apps)
    assert sorted(sets) == [2, 3]  # revision 1's set now carries revision 3
    assert sets[3].spec.template.spec.containers[0].image == f"{IMAGE}:1.0.0"
    status = get(custom)["status"]
    assert status["phase"] == "Paused" and status["currentStepIndex"] == 1
    assert status["currentPodHash"] == sets[3].metadata.labels[HASH]


def test_never_ready_canary_stalls_then_misses_its_deadline(custom: client.CustomObjectsApi,
                                                           apps: client.AppsV1Api,
                                                           sim: SimCluster) -> None:
    sim.script_never_ready(NS, NAME)
    set_image(custom, "1.1.0")
    sim.wait_idle()
    status = get(custom)["status"]
    assert status["phase"] == "Progressing"
    assert status["message"] == "more replicas need to be updated"
    assert status["currentStepIndex"] == 0
    sets = replica_sets(apps)
    assert (sets[1].spec.replicas, sets[2].spec.replicas) == (5, 1)
    sim.advance(601)
    sim.wait_idle()
    status = get(custom)["status"]
    assert status["phase"] == "Degraded"
    assert status["message"].startswith("ProgressDeadlineExceeded: ReplicaSet")


def test_manual_pause_holds_the_canary(custom: client.CustomObjectsApi, sim: SimCluster) -> None:
    custom.patch_namespaced_custom_object(*ARGS, NAME, {"spec": {"paused": True}})
    set_image(custom, "1.1.0")
    sim.wait_idle()
    status = get(custom)["status"]
    assert (status["phase"], status["message"]) == ("Paused", "manually paused")
    assert status["currentStepIndex"] == 0
    custom.patch_namespaced_custom_object(*ARGS, NAME, {"spec": {"paused": False}})
    sim.wait_idle()
    assert get(custom)["status"]["message"] == "CanaryPauseStep"


def test_converged_rollout_is_quiet(custom: client.CustomObjectsApi, sim: SimCluster) -> None:
    set_image(custom, "1.1.0")
    sim.wait_idle()
    before = sim.snapshot()
    sim.wait_idle()
    assert sim.snapshot() == before


def test_rollout_without_template_is_left_alone(custom: client.CustomObjectsApi,
                                                sim: SimCluster) -> None:
    custom.create_namespaced_custom_object(*ARGS, {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "bare"}, "spec": {"replicas": 2}})
    sim.wait_idle()
    assert "status" not in custom.get_namespaced_custom_object(*ARGS, "bare")
