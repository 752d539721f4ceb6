"""A Rollout's scale subresource (the CRD's paths: spec.replicas, status.HPAReplicas,
status.selector) and `spec.restartAt`, which the Rollouts controller honours by evicting the
pods created before it and recording `status.restartedAt`."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from simcluster import SimCluster

from .test_rollouts import ARGS, NAME, NS, get, promote, replica_sets, rollout, set_image

BACKDATE = 60  # the pods were created this long before each test


@pytest.fixture
def custom(kube_api_client: client.ApiClient, sim: SimCluster) -> client.CustomObjectsApi:
    api = client.CustomObjectsApi(kube_api_client)
    sim.advance(-BACKDATE)
    api.create_namespaced_custom_object(*ARGS, rollout())
    sim.wait_idle()
    sim.advance(BACKDATE)
    return api


def pod_uids(core: client.CoreV1Api) -> set[str]:
    listed = core.list_namespaced_pod(NS, label_selector=f"app={NAME}")
    return {p.metadata.uid for p in listed.items}


def test_scale_subresource_serves_the_crd_paths(custom: client.CustomObjectsApi,
                                                sim: SimCluster) -> None:
    scale = custom.get_namespaced_custom_object_scale(*ARGS, NAME)
    assert scale["kind"] == "Scale"
    assert (scale["spec"], scale["status"]) == (
        {"replicas": 5}, {"replicas": 5, "selector": f"app={NAME}"})
    assert get(custom)["status"]["HPAReplicas"] == 5

    scale["spec"]["replicas"] = 7
    custom.replace_namespaced_custom_object_scale(*ARGS, NAME, scale)
    sim.wait_idle()
    ro = get(custom)
    assert ro["kind"] == "Rollout"  # a Scale body does not rename the kind
    assert ro["spec"]["replicas"] == 7
    assert (ro["status"]["HPAReplicas"], ro["status"]["availableReplicas"]) == (7, 7)

    custom.patch_namespaced_custom_object_scale(*ARGS, NAME, {"spec": {"replicas": 3}})
    sim.wait_idle()
    assert custom.get_namespaced_custom_object_scale(*ARGS, NAME)["status"]["replicas"] == 3

    with pytest.raises(client.ApiException) as caught:  # the resourceVersion read at first
        custom.replace_namespaced_custom_object_scale(*ARGS, NAME, scale)
    assert caught.value.status == 409


def test_restart_at_replaces_older_pods_in_place(custom: client.CustomObjectsApi,
                                                 core: client.CoreV1Api, apps: client.AppsV1Api,
                                                 sim: SimCluster) -> None:
    old = pod_uids(core)
    sets = {rs.metadata.name for rs in replica_sets(apps).values()}
    at = sim.clock.stamp()
    custom.patch_namespaced_custom_object(*ARGS, NAME, {"spec": {"restartAt": at}})
    sim.wait_idle()
    ro = get(custom)
    assert ro["status"]["restartedAt"] == at
    assert ro["status"]["phase"] == "Healthy"
    now = pod_uids(core)
    assert len(now) == 5 and not now & old
    assert {rs.metadata.name for rs in replica_sets(apps).values()} == sets  # no new revision


def test_restart_at_in_the_future_waits(custom: client.CustomObjectsApi, core: client.CoreV1Api,
                                        sim: SimCluster) -> None:
    old = pod_uids(core)
    custom.patch_namespaced_custom_object(
        *ARGS, NAME, {"spec": {"restartAt": sim.clock.stamp(3600)}})
    sim.wait_idle()
    assert pod_uids(core) == old
    assert "restartedAt" not in get(custom)["status"]


def test_restart_during_a_paused_canary_keeps_the_step(custom: client.CustomObjectsApi,
                                                       core: client.CoreV1Api,
                                                       sim: SimCluster) -> None:
    set_image(custom, "1.1.0")
    sim.wait_idle()
    sim.advance(2)  # the canary pod, too, is older than restartAt
    old = pod_uids(core)
    at = sim.clock.stamp()
    custom.patch_namespaced_custom_object(*ARGS, NAME, {"spec": {"restartAt": at}})
    sim.wait_idle()
    ro: dict[str, Any] = get(custom)
    assert ro["status"]["restartedAt"] == at
    assert ro["status"]["phase"] == "Paused" and ro["status"]["currentStepIndex"] == 1
    assert not pod_uids(core) & old
    promote(custom)
    sim.wait_idle()
    assert get(custom)["status"]["currentStepIndex"] == 3
