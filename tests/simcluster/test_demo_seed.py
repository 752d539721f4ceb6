"""The demo world of CONTRACT.md, read back through the real client."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kubernetes import client

from simcluster import SimCluster

REVISION = "deployment.kubernetes.io/revision"
IMAGE = "registry.example.com/shop"


def test_namespaces(core: client.CoreV1Api) -> None:
    names = {n.metadata.name for n in core.list_namespace().items}
    assert {"shop-staging", "shop-prod", "velero"} <= names
    assert core.list_namespaced_pod("velero").items == []


def test_apps_in_both_environments(apps: client.AppsV1Api) -> None:
    for namespace in ("shop-staging", "shop-prod"):
        api = apps.read_namespaced_deployment("shop-api", namespace)
        container = api.spec.template.spec.containers[0]
        assert (container.name, container.image) == ("api", f"{IMAGE}/api:1.4.0")
        assert api.spec.replicas == 3 and api.status.ready_replicas == 3
        assert api.spec.progress_deadline_seconds == 600
        assert api.metadata.labels["app"] == "shop-api"
        assert container.resources.limits["memory"] and container.resources.requests["cpu"]
        assert api.metadata.annotations[REVISION] == "3"
        web = apps.read_namespaced_deployment("shop-web", namespace)
        container = web.spec.template.spec.containers[0]
        assert (container.name, container.image) == ("web", f"{IMAGE}/web:2.1.0")
        assert web.spec.replicas == 2 and web.status.available_replicas == 2
    names = {d.metadata.name for d in apps.list_namespaced_deployment("shop-prod").items}
    assert names == {"shop-api", "shop-web"}


def test_shop_api_history(apps: client.AppsV1Api) -> None:
    dep = apps.read_namespaced_deployment("shop-api", "shop-staging")
    sets = apps.list_namespaced_replica_set("shop-staging", label_selector="app=shop-api").items
    by_revision = {rs.metadata.annotations[REVISION]: rs for rs in sets}
    assert {r: rs.spec.template.spec.containers[0].image for r, rs in by_revision.items()} == {
        "1": f"{IMAGE}/api:1.2.0", "2": f"{IMAGE}/api:1.3.0", "3": f"{IMAGE}/api:1.4.0"}
    for revision, rs in by_revision.items():
        pod_hash = rs.metadata.labels["pod-template-hash"]
        assert rs.metadata.name == f"shop-api-{pod_hash}"
        assert rs.spec.selector.match_labels == {"app": "shop-api", "pod-template-hash": pod_hash}
        owner = rs.metadata.owner_references[0]
        assert (owner.uid, owner.controller) == (dep.metadata.uid, True)
        assert rs.spec.replicas == (3 if revision == "3" else 0)
    created = [by_revision[r].metadata.creation_timestamp for r in ("1", "2", "3")]
    now = datetime.now(UTC)
    assert created == sorted(created)
    assert now - created[0] > timedelta(days=5) and now - created[2] > timedelta(hours=12)
    assert dep.metadata.creation_timestamp == created[0]


def test_worker_crashloops_in_staging(core: client.CoreV1Api, apps: client.AppsV1Api) -> None:
    worker = apps.read_namespaced_deployment("shop-worker", "shop-staging")
    container = worker.spec.template.spec.containers[0]
    assert (container.name, container.image) == ("worker", f"{IMAGE}/worker:1.4.0")
    assert container.resources.limits["memory"] == "256Mi"
    assert worker.spec.replicas == 1 and not worker.status.ready_replicas
    pods = core.list_namespaced_pod("shop-staging", label_selector="app=shop-worker").items
    assert len(pods) == 1
    pod = pods[0]
    assert pod.status.phase == "Running"
    assert pod.spec.containers[0].resources.limits["memory"] == "256Mi"
    status = pod.status.container_statuses[0]
    assert status.ready is False and status.restart_count == 7
    assert status.state.waiting.reason == "CrashLoopBackOff"
    terminated = status.last_state.terminated
    assert (terminated.reason, terminated.exit_code) == ("OOMKilled", 137)
    assert terminated.started_at < terminated.finished_at
    events = core.list_namespaced_event("shop-staging", field_selector=(
        f"involvedObject.name={pod.metadata.name},reason=BackOff")).items
    assert len(events) == 1
    backoff = events[0]
    assert backoff.type == "Warning" and backoff.count == 7
    assert backoff.message.startswith("Back-off restarting failed container worker in pod")
    span = backoff.last_timestamp - backoff.first_timestamp
    assert timedelta(minutes=20) < span <= timedelta(minutes=30)
    assert "shop-worker" not in {d.metadata.name for d in apps.list_namespaced_deployment(
        "shop-prod").items}


def test_only_recent_events_survive(core: client.CoreV1Api) -> None:
    events = core.list_event_for_all_namespaces().items
    assert events and all(
        datetime.now(UTC) - e.last_timestamp < timedelta(hours=1) for e in events)


def test_seeded_world_is_quiet(sim: SimCluster) -> None:
    sim.wait_idle()
    before = sim.snapshot()
    sim.manager.run_pass()
    assert sim.snapshot() == before


def test_empty_seed(empty_sim: SimCluster) -> None:
    assert list(empty_sim.snapshot()) == ["core/v1/Namespace//default"]


def test_seed_is_deterministic() -> None:
    first, second = SimCluster(seed="demo"), SimCluster(seed="demo")
    assert first.snapshot() == second.snapshot()
    assert first.get("/apis/apps/v1/namespaces/shop-prod/deployments/shop-web") is not None
    assert first.get("/apis/apps/v1/namespaces/shop-prod/deployments/nope") is None
