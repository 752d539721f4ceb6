"""Deployment, ReplicaSet, StatefulSet and kubelet behaviour the handlers rely on: revisions,
rollback reuse, restarts, the scale subresource, rollout conditions and cascading deletes."""

from __future__ import annotations

import pytest
from kubernetes import client

from simcluster import SimCluster

from .helpers import deployment, status_of

REVISION = "deployment.kubernetes.io/revision"
NS = "shop-staging"


def _replica_sets(apps: client.AppsV1Api, app: str) -> dict[str, client.V1ReplicaSet]:
    items = apps.list_namespaced_replica_set(NS, label_selector=f"app={app}").items
    return {rs.metadata.annotations[REVISION]: rs for rs in items}


def _set_image(apps: client.AppsV1Api, app: str, container: str, image: str) -> None:
    apps.patch_namespaced_deployment(app, NS, {"spec": {"template": {"spec": {
        "containers": [{"name": container, "image": image}]}}}})


def test_template_change_creates_next_revision(sim: SimCluster, apps: client.AppsV1Api,
                                               core: client.CoreV1Api) -> None:
    _set_image(apps, "shop-api", "api", "registry.example.com/shop/api:1.5.0")
    sim.wait_idle()
    sets = _replica_sets(apps, "shop-api")
    assert sorted(sets, key=int) == ["1", "2", "3", "4"]
    new = sets["4"]
    assert new.spec.template.spec.containers[0].image.endswith(":1.5.0")
    assert new.spec.replicas == 3 and new.status.ready_replicas == 3
    assert all(sets[r].spec.replicas == 0 for r in ("1", "2", "3"))
    owner = new.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.controller) == ("Deployment", "shop-api", True)
    pod_hash = new.metadata.labels["pod-template-hash"]
    assert new.metadata.name == f"shop-api-{pod_hash}"
    pods = core.list_namespaced_pod(NS, label_selector=f"pod-template-hash={pod_hash}").items
    assert len(pods) == 3 and all(p.status.phase == "Running" for p in pods)
    dep = apps.read_namespaced_deployment("shop-api", NS)
    assert dep.metadata.annotations[REVISION] == "4"
    assert dep.status.observed_generation == dep.metadata.generation
    assert (dep.status.updated_replicas, dep.status.available_replicas) == (3, 3)
    progressing = {c.type: c for c in dep.status.conditions}["Progressing"]
    assert progressing.reason == "NewReplicaSetAvailable"


def test_rollback_reuses_the_old_replica_set(sim: SimCluster, apps: client.AppsV1Api) -> None:
    old = _replica_sets(apps, "shop-api")["1"]
    template = apps.api_client.sanitize_for_serialization(old.spec.template)
    del template["metadata"]["labels"]["pod-template-hash"]  # as `kubectl rollout undo` does
    apps.patch_namespaced_deployment("shop-api", NS, [
        {"op": "replace", "path": "/spec/template", "value": template}])
    sim.wait_idle()
    sets = _replica_sets(apps, "shop-api")
    assert sorted(sets, key=int) == ["2", "3", "4"]
    reused = sets["4"]
    assert reused.metadata.uid == old.metadata.uid
    assert reused.metadata.annotations["deployment.kubernetes.io/revision-history"] == "1"
    assert reused.spec.replicas == 3
    assert reused.spec.template.spec.containers[0].image.endswith(":1.2.0")
    assert apps.read_namespaced_deployment("shop-api", NS).metadata.annotations[REVISION] == "4"


def test_restart_annotation_rolls_new_pods(sim: SimCluster, apps: client.AppsV1Api,
                                           core: client.CoreV1Api) -> None:
    before = {p.metadata.name for p in core.list_namespaced_pod(
        NS, label_selector="app=shop-web").items}
    apps.patch_namespaced_deployment("shop-web", NS, {"spec": {"template": {"metadata": {
        "annotations": {"kubectl.kubernetes.io/restartedAt": "2024-05-01T12:00:00Z"}}}}})
    sim.wait_idle()
    after = core.list_namespaced_pod(NS, label_selector="app=shop-web").items
    assert len(after) == 2 and before.isdisjoint(p.metadata.name for p in after)
    assert all(p.metadata.annotations["kubectl.kubernetes.io/restartedAt"] for p in after)
    dep = apps.read_namespaced_deployment("shop-web", NS)
    assert dep.metadata.annotations[REVISION] == "2"


def test_rollout_progresses_over_ticks(sim: SimCluster, apps: client.AppsV1Api) -> None:
    _set_image(apps, "shop-api", "api", "registry.example.com/shop/api:1.5.0")
    seen_mixed = False
    for _ in range(200):
        dep = apps.read_namespaced_deployment("shop-api", NS)
        status = dep.status
        if 0 < (status.updated_replicas or 0) < 3:
            seen_mixed = True
        # maxSurge 25% of 3 -> 1, maxUnavailable -> 0: never fewer than 3 available
        assert (status.available_replicas or 0) >= 3
        done = (status.updated_replicas, status.replicas, status.available_replicas) == (3, 3, 3)
        if dep.status.observed_generation == dep.metadata.generation and done:
            break
        sim.manager.run_pass()
    assert seen_mixed


def test_scale_subresource(sim: SimCluster, apps: client.AppsV1Api) -> None:
    scale = apps.read_namespaced_deployment_scale("shop-web", NS)
    assert (scale.kind, scale.spec.replicas, scale.status.selector) == ("Scale", 2, "app=shop-web")
    scale.spec.replicas = 4
    updated = apps.replace_namespaced_deployment_scale("shop-web", NS, scale)
    assert updated.spec.replicas == 4
    scale.spec.replicas = 5  # carries the now stale resourceVersion
    with pytest.raises(client.ApiException) as err:
        apps.replace_namespaced_deployment_scale("shop-web", NS, scale)
    assert err.value.status == 409
    apps.patch_namespaced_deployment_scale("shop-web", NS, {"spec": {"replicas": 1}})
    sim.wait_idle()
    dep = apps.read_namespaced_deployment("shop-web", NS)
    assert dep.spec.replicas == 1 and dep.status.ready_replicas == 1
    assert apps.read_namespaced_deployment_scale("shop-web", NS).status.replicas == 1
    with pytest.raises(client.ApiException) as err:
        apps.patch_namespaced_deployment_scale("shop-web", NS, {"spec": {"replicas": -1}})
    assert err.value.status == 422


def test_paused_deployment_does_not_roll(sim: SimCluster, apps: client.AppsV1Api) -> None:
    apps.patch_namespaced_deployment("shop-web", NS, {"spec": {"paused": True}})
    _set_image(apps, "shop-web", "web", "registry.example.com/shop/web:2.2.0")
    sim.wait_idle()
    assert list(_replica_sets(apps, "shop-web")) == ["1"]
    dep = apps.read_namespaced_deployment("shop-web", NS)
    assert {c.type: c.reason for c in dep.status.conditions}["Progressing"] == "DeploymentPaused"
    apps.patch_namespaced_deployment("shop-web", NS, {"spec": {"paused": False}})
    sim.wait_idle()
    assert sorted(_replica_sets(apps, "shop-web")) == ["1", "2"]


def test_never_ready_rollout_exceeds_progress_deadline(sim: SimCluster,
                                                       apps: client.AppsV1Api) -> None:
    sim.script_never_ready(NS, "shop-api")
    _set_image(apps, "shop-api", "api", "registry.example.com/shop/api:1.5.0")
    sim.wait_idle()
    dep = apps.read_namespaced_deployment("shop-api", NS)
    assert dep.status.updated_replicas == 1 and dep.status.available_replicas == 3
    assert {c.type: c.reason for c in dep.status.conditions}["Progressing"] == (
        "ReplicaSetUpdated")
    sim.advance(601)  # simulated clock: no need to wait ten minutes
    sim.wait_idle()
    dep = apps.read_namespaced_deployment("shop-api", NS)
    progressing = {c.type: c for c in dep.status.conditions}["Progressing"]
    assert (progressing.status, progressing.reason) == ("False", "ProgressDeadlineExceeded")
    new_rs = _replica_sets(apps, "shop-api")["4"].metadata.name
    assert progressing.message == f'ReplicaSet "{new_rs}" has timed out progressing.'


def test_image_pull_error(sim: SimCluster, apps: client.AppsV1Api,
                          core: client.CoreV1Api) -> None:
    sim.script_image_pull_error(":9.9.9")
    _set_image(apps, "shop-web", "web", "registry.example.com/shop/web:9.9.9")
    sim.wait_idle()
    new_rs = _replica_sets(apps, "shop-web")["2"]
    pods = core.list_namespaced_pod(
        NS, label_selector=f"pod-template-hash={new_rs.metadata.labels['pod-template-hash']}").items
    assert len(pods) == 1
    status = pods[0].status
    assert status.phase == "Pending"
    waiting = status.container_statuses[0].state.waiting
    assert waiting.reason == "ImagePullBackOff" and ":9.9.9" in waiting.message
    assert status.container_statuses[0].ready is False
    events = core.list_namespaced_event(
        NS, field_selector=f"involvedObject.name={pods[0].metadata.name},type=Warning").items
    assert {"Failed"} <= {e.reason for e in events}
    assert apps.read_namespaced_deployment("shop-web", NS).status.ready_replicas == 2
    with pytest.raises(client.ApiException) as err:
        core.read_namespaced_pod_log(pods[0].metadata.name, NS)
    assert "is waiting to start: trying and failing to pull image" in status_of(err.value)[
        "message"]


def test_cascade_delete(sim: SimCluster, apps: client.AppsV1Api, core: client.CoreV1Api) -> None:
    apps.delete_namespaced_deployment("shop-api", NS)
    assert apps.list_namespaced_replica_set(NS, label_selector="app=shop-api").items == []
    assert core.list_namespaced_pod(NS, label_selector="app=shop-api").items == []
    apps.delete_namespaced_deployment("shop-web", NS, propagation_policy="Orphan")
    orphans = apps.list_namespaced_replica_set(NS, label_selector="app=shop-web").items
    assert len(orphans) == 1 and not orphans[0].metadata.owner_references
    sim.wait_idle()
    assert len(core.list_namespaced_pod(NS, label_selector="app=shop-web").items) == 2
    recreated = deployment("shop-web", image="registry.example.com/shop/web:2.1.0")
    recreated["spec"]["template"] = apps.api_client.sanitize_for_serialization(
        orphans[0].spec.template)
    del recreated["spec"]["template"]["metadata"]["labels"]["pod-template-hash"]
    recreated["spec"]["selector"] = {"matchLabels": {"app": "shop-web"}}
    apps.create_namespaced_deployment(NS, recreated)
    sim.wait_idle()
    adopted = apps.list_namespaced_replica_set(NS, label_selector="app=shop-web").items
    assert [rs.metadata.name for rs in adopted] == [orphans[0].metadata.name]
    assert adopted[0].metadata.owner_references[0].kind == "Deployment"


def test_deleted_pod_is_replaced(sim: SimCluster, core: client.CoreV1Api) -> None:
    victim = core.list_namespaced_pod(NS, label_selector="app=shop-web").items[0].metadata.name
    core.delete_namespaced_pod(victim, NS)
    sim.wait_idle()
    names = [p.metadata.name for p in core.list_namespaced_pod(NS,
                                                               label_selector="app=shop-web").items]
    assert len(names) == 2 and victim not in names


def test_statefulset_pods_and_rolling_restart(empty_api_client: client.ApiClient,
                                              empty_sim: SimCluster) -> None:
    apps, core = client.AppsV1Api(empty_api_client), client.CoreV1Api(empty_api_client)
    body = deployment("db", image="postgres:16.4", replicas=3)
    body["kind"] = "StatefulSet"
    body["spec"]["serviceName"] = "db"
    apps.create_namespaced_stateful_set("default", body)
    empty_sim.manager.run_pass()
    assert [p.metadata.name for p in core.list_namespaced_pod("default").items] == ["db-0"]
    empty_sim.wait_idle()
    pods = core.list_namespaced_pod("default").items
    assert [p.metadata.name for p in pods] == ["db-0", "db-1", "db-2"]
    sts = apps.read_namespaced_stateful_set("db", "default")
    assert (sts.status.replicas, sts.status.ready_replicas) == (3, 3)
    assert sts.status.current_revision == sts.status.update_revision
    first_revision = sts.status.update_revision
    uids = {p.metadata.name: p.metadata.uid for p in pods}
    apps.patch_namespaced_stateful_set("db", "default", {"spec": {"template": {"metadata": {
        "annotations": {"kubectl.kubernetes.io/restartedAt": "2024-05-01T12:00:00Z"}}}}})
    empty_sim.wait_idle()
    sts = apps.read_namespaced_stateful_set("db", "default")
    assert sts.status.update_revision != first_revision
    assert sts.status.current_revision == sts.status.update_revision
    assert sts.status.updated_replicas == 3
    pods = core.list_namespaced_pod("default").items
    assert all(uids[p.metadata.name] != p.metadata.uid for p in pods)
    assert {p.metadata.labels["controller-revision-hash"] for p in pods} == {
        sts.status.update_revision}
    apps.patch_namespaced_stateful_set_scale("db", "default", {"spec": {"replicas": 1}})
    empty_sim.wait_idle()
    assert [p.metadata.name for p in core.list_namespaced_pod("default").items] == ["db-0"]
