"""HorizontalPodAutoscalers through the real client: autoscaling/v2 (stored) and v1 (converted)
views of the same objects, status subresource, discovery, validation, and the controller that
scales a target on a scripted CPU utilization."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from kubernetes import client, watch

from simcluster import SimCluster
from tests.simcluster.helpers import deployment, status_of

NS = "shop-staging"


def _hpa(name: str, target: str, low: int = 1, high: int = 4, cpu: int = 60,
         **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                    "name": target},
                 "minReplicas": low, "maxReplicas": high,
                 "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                     "type": "Utilization", "averageUtilization": cpu}}}], **extra},
    }


def _app(name: str, replicas: int = 2) -> dict[str, Any]:
    body = deployment(name, replicas=replicas)
    body["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "requests": {"cpu": "200m"}, "limits": {"cpu": "500m"}}
    return body


def _conditions(hpa: Any) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in hpa.status.conditions or []}


@pytest.fixture
def v2(kube_api_client: client.ApiClient) -> client.AutoscalingV2Api:
    return client.AutoscalingV2Api(kube_api_client)


@pytest.fixture
def v1(kube_api_client: client.ApiClient) -> client.AutoscalingV1Api:
    return client.AutoscalingV1Api(kube_api_client)


def test_discovery_prefers_v2_and_lists_status(kube_api_client: client.ApiClient,
                                               v2: client.AutoscalingV2Api) -> None:
    groups = {g.name: g for g in client.ApisApi(kube_api_client).get_api_versions().groups}
    autoscaling = groups["autoscaling"]
    assert [v.version for v in autoscaling.versions] == ["v2", "v1"]
    assert autoscaling.preferred_version.version == "v2"
    resources = {r.name: r for r in v2.get_api_resources().resources}
    assert resources["horizontalpodautoscalers"].namespaced is True
    assert resources["horizontalpodautoscalers"].kind == "HorizontalPodAutoscaler"
    assert "horizontalpodautoscalers/status" in resources
    assert "hpa" in resources["horizontalpodautoscalers"].short_names


def test_demo_seed_has_an_inert_hpa_for_shop_api(sim: SimCluster,
                                                 v2: client.AutoscalingV2Api) -> None:
    for namespace in ("shop-staging", "shop-prod"):
        hpa = v2.read_namespaced_horizontal_pod_autoscaler("shop-api", namespace)
        assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (1, 10)
        assert hpa.spec.scale_target_ref.name == "shop-api"
        assert hpa.spec.metrics[0].resource.target.average_utilization == 70
        # Never computed: desiredReplicas is still 0, as a real HPA without metrics shows.
        assert (hpa.status.current_replicas, hpa.status.desired_replicas) == (3, 0)
        assert _conditions(hpa)["ScalingActive"] == ("False", "FailedGetResourceMetric")
    sim.wait_idle()
    before = sim.snapshot()
    sim.manager.run_pass()
    assert sim.snapshot() == before


def test_v2_create_defaults_and_validates(v2: client.AutoscalingV2Api) -> None:
    body = _hpa("web", "shop-web")
    del body["spec"]["minReplicas"], body["spec"]["metrics"]
    created = v2.create_namespaced_horizontal_pod_autoscaler(NS, body)
    assert created.spec.min_replicas == 1
    assert created.spec.metrics[0].resource.target.average_utilization == 80
    with pytest.raises(client.ApiException) as err:
        v2.create_namespaced_horizontal_pod_autoscaler(NS, _hpa("bad", "shop-web", 5, 2))
    assert err.value.status == 422
    assert status_of(err.value)["details"]["causes"][0]["field"] == "spec.maxReplicas"
    bad = _hpa("bad", "shop-web")
    del bad["spec"]["scaleTargetRef"]["name"]
    with pytest.raises(client.ApiException) as err:
        v2.create_namespaced_horizontal_pod_autoscaler(NS, bad)
    assert err.value.status == 422


def test_v1_and_v2_are_views_of_one_object(v1: client.AutoscalingV1Api,
                                           v2: client.AutoscalingV2Api) -> None:
    memory = {"type": "Resource", "resource": {"name": "memory", "target": {
        "type": "AverageValue", "averageValue": "200Mi"}}}
    body = _hpa("web", "shop-web", 1, 5, 65)
    body["spec"]["metrics"].append(memory)
    v2.create_namespaced_horizontal_pod_autoscaler(NS, body)
    # A v1 client changes what it knows; the memory metric survives in the annotation. The
    # HPA controller may write the status between the read and the replace: a 409, which a
    # client answers by reading again, as kubectl edit does.
    for attempt in range(5):
        old = v1.read_namespaced_horizontal_pod_autoscaler("web", NS)
        assert old.api_version == "autoscaling/v1"
        assert old.spec.target_cpu_utilization_percentage == 65
        assert "autoscaling.alpha.kubernetes.io/metrics" in old.metadata.annotations
        old.spec.max_replicas = 7
        try:
            v1.replace_namespaced_horizontal_pod_autoscaler("web", NS, old)
            break
        except client.ApiException as exc:
            if exc.status != 409 or attempt == 4:
                raise
    new = v2.read_namespaced_horizontal_pod_autoscaler("web", NS)
    assert new.spec.max_replicas == 7
    assert [m.resource.name for m in new.spec.metrics] == ["cpu", "memory"]
    assert not (new.metadata.annotations or {})
    v1.patch_namespaced_horizontal_pod_autoscaler(
        "web", NS, {"spec": {"targetCPUUtilizationPercentage": 50}})
    new = v2.read_namespaced_horizontal_pod_autoscaler("web", NS)
    assert new.spec.metrics[0].resource.target.average_utilization == 50
    listed = v1.list_namespaced_horizontal_pod_autoscaler(NS).items
    assert {h.metadata.name for h in listed} == {"shop-api", "web"}
    assert {h.api_version for h in listed} == {"autoscaling/v1"}
    v1.delete_namespaced_horizontal_pod_autoscaler("web", NS)
    assert [h.metadata.name for h in v2.list_namespaced_horizontal_pod_autoscaler(NS).items] == [
        "shop-api"]


def test_v1_create_is_stored_as_v2(v1: client.AutoscalingV1Api,
                                   v2: client.AutoscalingV2Api) -> None:
    body = {"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                        "name": "shop-web"},
                     "maxReplicas": 3, "targetCPUUtilizationPercentage": 75}}
    v1.create_namespaced_horizontal_pod_autoscaler(NS, body)
    stored = v2.read_namespaced_horizontal_pod_autoscaler("web", NS)
    assert stored.api_version == "autoscaling/v2"
    assert stored.spec.metrics[0].resource.target.average_utilization == 75


def test_status_subresource(sim: SimCluster, v2: client.AutoscalingV2Api) -> None:
    sim.manager.stop()  # no controller writes status meanwhile
    v2.create_namespaced_horizontal_pod_autoscaler(NS, _hpa("web", "shop-web"))
    # Writes to the main resource ignore status; /status writes only status.
    body = {"spec": {"maxReplicas": 6}, "status": {"currentReplicas": 99, "desiredReplicas": 99}}
    patched = v2.patch_namespaced_horizontal_pod_autoscaler("web", NS, body)
    assert patched.spec.max_replicas == 6
    assert (patched.status.current_replicas, patched.status.desired_replicas) == (None, 0)
    body = {"spec": {"maxReplicas": 2}, "status": {"currentReplicas": 2, "desiredReplicas": 2}}
    patched = v2.patch_namespaced_horizontal_pod_autoscaler_status("web", NS, body)
    assert patched.spec.max_replicas == 6 and patched.status.desired_replicas == 2
    status = v2.read_namespaced_horizontal_pod_autoscaler_status("web", NS)
    assert (status.spec.max_replicas, status.status.current_replicas) == (6, 2)


def test_missing_target_cannot_scale(sim: SimCluster, v2: client.AutoscalingV2Api,
                                     core: client.CoreV1Api) -> None:
    v2.create_namespaced_horizontal_pod_autoscaler(NS, _hpa("ghost", "nothing-here"))
    sim.wait_idle()
    hpa = v2.read_namespaced_horizontal_pod_autoscaler("ghost", NS)
    assert _conditions(hpa)["AbleToScale"] == ("False", "FailedGetScale")
    [cond] = [c for c in hpa.status.conditions if c.type == "AbleToScale"]
    assert cond.message.endswith('deployments/scale.apps "nothing-here" not found')
    events = core.list_namespaced_event(NS, field_selector="involvedObject.name=ghost").items
    assert [(e.type, e.reason) for e in events] == [("Warning", "FailedGetScale")]


def test_scales_up_to_max_and_reports_the_limit(sim: SimCluster, v2: client.AutoscalingV2Api,
                                                apps: client.AppsV1Api,
                                                core: client.CoreV1Api) -> None:
    apps.create_namespaced_deployment(NS, _app("busy", replicas=2))
    v2.create_namespaced_horizontal_pod_autoscaler(NS, _hpa("busy", "busy", 1, 4, 50))
    sim.wait_idle()
    hpa = v2.read_namespaced_horizontal_pod_autoscaler("busy", NS)
    assert _conditions(hpa)["ScalingActive"] == ("False", "FailedGetResourceMetric")
    assert apps.read_namespaced_deployment("busy", NS).spec.replicas == 2

    sim.script_cpu_utilization(NS, "busy", 150)
    sim.wait_idle()
    hpa = v2.read_namespaced_horizontal_pod_autoscaler("busy", NS)
    assert apps.read_namespaced_deployment("busy", NS).spec.replicas == 4
    assert (hpa.status.current_replicas, hpa.status.desired_replicas) == (4, 4)
    assert _conditions(hpa) == {"AbleToScale": ("True", "ReadyForNewScale"),
                                "ScalingActive": ("True", "ValidMetricFound"),
                                "ScalingLimited": ("True", "TooManyReplicas")}
    [metric] = hpa.status.current_metrics
    assert metric.resource.current.average_utilization == 150
    assert metric.resource.current.average_value == "300m"
    assert hpa.status.last_scale_time is not None
    events = core.list_namespaced_event(NS, field_selector="involvedObject.name=busy,"
                                                           "reason=SuccessfulRescale").items
    assert events and events[0].message.startswith("New size: ")
    assert "above target" in events[0].message
    before = sim.snapshot()
    sim.manager.run_pass()
    assert sim.snapshot() == before

    sim.script_cpu_utilization(NS, "busy", 10)
    sim.wait_idle()
    hpa = v2.read_namespaced_horizontal_pod_autoscaler("busy", NS)
    assert apps.read_namespaced_deployment("busy", NS).spec.replicas == 1
    assert _conditions(hpa)["ScalingLimited"] == ("False", "DesiredWithinRange")


def test_within_tolerance_and_out_of_bounds(sim: SimCluster, v2: client.AutoscalingV2Api,
                                            apps: client.AppsV1Api) -> None:
    apps.create_namespaced_deployment(NS, _app("steady", replicas=3))
    sim.script_cpu_utilization(NS, "steady", 64)  # 64/60: within the 10% tolerance
    v2.create_namespaced_horizontal_pod_autoscaler(NS, _hpa("steady", "steady", 2, 5, 60))
    sim.wait_idle()
    assert apps.read_namespaced_deployment("steady", NS).spec.replicas == 3
    # Scaled by hand below minReplicas: the HPA brings it back at once, metrics or not.
    apps.patch_namespaced_deployment_scale("steady", NS, {"spec": {"replicas": 1}})
    sim.wait_idle()
    assert apps.read_namespaced_deployment("steady", NS).spec.replicas == 2


def test_watch_serves_the_requested_version(sim: SimCluster, v1: client.AutoscalingV1Api,
                                            v2: client.AutoscalingV2Api) -> None:
    start = v1.list_namespaced_horizontal_pod_autoscaler(NS).metadata.resource_version
    seen: list[tuple[str, str, int | None]] = []

    def consume() -> None:
        stream = watch.Watch().stream(v1.list_namespaced_horizontal_pod_autoscaler, NS,
                                      resource_version=start, timeout_seconds=3)
        for event in stream:
            obj = event["object"]
            seen.append((event["type"], obj.api_version,
                         obj.spec.target_cpu_utilization_percentage))
            break

    reader = threading.Thread(target=consume)
    reader.start()
    v2.create_namespaced_horizontal_pod_autoscaler(NS, _hpa("web", "shop-web", cpu=55))
    reader.join(timeout=10)
    assert seen == [("ADDED", "autoscaling/v1", 55)]


def test_cpu_utilization_over_the_admin_api(sim: SimCluster) -> None:
    import httpx

    url, token = sim.url, sim.token
    headers = {"Authorization": f"Bearer {token}"}
    good = httpx.post(f"{url}/_sim/cpu-utilization", headers=headers, verify=sim.ssl_context(),
                      json={"namespace": NS, "workload_name": "shop-api", "percent": 90})
    assert good.status_code == 201
    bad = httpx.post(f"{url}/_sim/cpu-utilization", headers=headers, verify=sim.ssl_context(),
                     json={"namespace": NS, "workload_name": "shop-api", "percent": -1})
    assert bad.status_code == 400
    assert sim.scripts.cpu_utilization_for(NS, ["shop-api"]) == 90
