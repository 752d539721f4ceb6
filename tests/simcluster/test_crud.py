"""CRUD, errors as Status objects, resourceVersion conflicts, dry-run and auth, all through
the real `kubernetes` client."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from kubernetes import client

from simcluster import SimCluster

from .helpers import deployment, pod, status_of


def test_namespace_crud(empty_api_client: client.ApiClient) -> None:
    core = client.CoreV1Api(empty_api_client)
    created = core.create_namespace({"metadata": {"name": "team-a", "labels": {"tier": "x"}}})
    assert created.metadata.uid and created.metadata.resource_version
    assert created.status.phase == "Active"
    assert created.metadata.labels["kubernetes.io/metadata.name"] == "team-a"
    names = [n.metadata.name for n in core.list_namespace().items]
    assert names == ["default", "team-a"]
    core.patch_namespace("team-a", {"metadata": {"labels": {"tier": "y"}}})
    assert core.read_namespace("team-a").metadata.labels["tier"] == "y"
    core.delete_namespace("team-a")
    with pytest.raises(client.ApiException) as err:
        core.read_namespace("team-a")
    assert err.value.status == 404


def test_pod_crud_and_list_across_namespaces(empty_api_client: client.ApiClient,
                                             empty_sim: SimCluster) -> None:
    core = client.CoreV1Api(empty_api_client)
    core.create_namespace({"metadata": {"name": "other"}})
    core.create_namespaced_pod("default", pod("one"))
    core.create_namespaced_pod("other", pod("two"))
    empty_sim.wait_idle()
    one = core.read_namespaced_pod("one", "default")
    assert one.status.phase == "Running"
    assert one.spec.node_name == "sim-node-1"
    assert one.status.container_statuses[0].ready is True
    everywhere = core.list_pod_for_all_namespaces()
    assert [(p.metadata.namespace, p.metadata.name) for p in everywhere.items] == [
        ("default", "one"), ("other", "two")]
    assert int(everywhere.metadata.resource_version) > 0
    core.delete_namespaced_pod("one", "default")
    assert [p.metadata.name for p in core.list_namespaced_pod("default").items] == []


def test_errors_are_status_objects(empty_api_client: client.ApiClient) -> None:
    apps = client.AppsV1Api(empty_api_client)
    with pytest.raises(client.ApiException) as err:
        apps.read_namespaced_deployment("nope", "default")
    assert err.value.status == 404
    assert status_of(err.value) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'deployments.apps "nope" not found', "reason": "NotFound", "code": 404,
        "details": {"name": "nope", "group": "apps", "kind": "deployments"},
    }
    apps.create_namespaced_deployment("default", deployment("web"))
    with pytest.raises(client.ApiException) as err:
        apps.create_namespaced_deployment("default", deployment("web"))
    assert err.value.status == 409
    assert status_of(err.value)["reason"] == "AlreadyExists"
    with pytest.raises(client.ApiException) as err:
        apps.create_namespaced_deployment("missing", deployment("web"))
    assert status_of(err.value)["message"] == 'namespaces "missing" not found'


def test_invalid_objects_get_422(empty_api_client: client.ApiClient) -> None:
    apps = client.AppsV1Api(empty_api_client)
    bad = deployment("web")
    bad["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    with pytest.raises(client.ApiException) as err:
        apps.create_namespaced_deployment("default", bad)
    status = status_of(err.value)
    assert err.value.status == 422 and status["reason"] == "Invalid"
    assert "`selector` does not match template `labels`" in status["message"]
    with pytest.raises(client.ApiException) as err:
        apps.create_namespaced_deployment("default", deployment("Bad_Name"))
    assert err.value.status == 422


def test_stale_update_conflicts(empty_api_client: client.ApiClient,
                                empty_sim: SimCluster) -> None:
    apps = client.AppsV1Api(empty_api_client)
    apps.create_namespaced_deployment("default", deployment("web"))
    empty_sim.wait_idle()  # controllers write status too; settle before racing ourselves
    first = apps.read_namespaced_deployment("web", "default")
    second = apps.read_namespaced_deployment("web", "default")
    first.spec.replicas = 5
    apps.replace_namespaced_deployment("web", "default", first)
    second.spec.replicas = 7
    with pytest.raises(client.ApiException) as err:
        apps.replace_namespaced_deployment("web", "default", second)
    assert err.value.status == 409
    status = status_of(err.value)
    assert status["reason"] == "Conflict"
    assert status["message"] == (
        'Operation cannot be fulfilled on deployments.apps "web": the object has been modified; '
        "please apply your changes to the latest version and try again")
    assert apps.read_namespaced_deployment("web", "default").spec.replicas == 5


def test_metadata_generation_and_defaults(empty_api_client: client.ApiClient) -> None:
    apps = client.AppsV1Api(empty_api_client)
    created = apps.create_namespaced_deployment("default", deployment("web"))
    assert created.metadata.generation == 1
    assert created.spec.strategy.type == "RollingUpdate"
    assert created.spec.strategy.rolling_update.max_surge == "25%"
    assert created.spec.template.spec.containers[0].image_pull_policy == "IfNotPresent"
    labelled = apps.patch_namespaced_deployment("web", "default",
                                                {"metadata": {"labels": {"x": "y"}}})
    assert labelled.metadata.generation == 1
    scaled = apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 4}})
    assert scaled.metadata.generation == 2
    assert int(scaled.metadata.resource_version) > int(labelled.metadata.resource_version)


def test_status_writes_only_touch_status(empty_api_client: client.ApiClient) -> None:
    core = client.CoreV1Api(empty_api_client)
    svc = {"metadata": {"name": "web"},
           "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
           "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}}
    created = core.create_namespaced_service("default", svc)
    assert created.spec.cluster_ip.startswith("10.96.")
    assert not created.status.load_balancer.ingress  # status is ignored on create
    core.patch_namespaced_service("web", "default", {"spec": {"ports": [{"port": 8080}]},
                                                     "status": {"loadBalancer": {}}})
    core.patch_namespaced_service_status(
        "web", "default", {"spec": {"type": "NodePort"},
                           "status": {"loadBalancer": {"ingress": [{"ip": "5.6.7.8"}]}}})
    read = core.read_namespaced_service("web", "default")
    assert read.spec.type == "ClusterIP"
    assert [p.port for p in read.spec.ports] == [80, 8080]
    assert read.status.load_balancer.ingress[0].ip == "5.6.7.8"


def test_dry_run_changes_nothing(sim: SimCluster, apps: client.AppsV1Api) -> None:
    before = sim.snapshot()
    result = apps.patch_namespaced_deployment("shop-api", "shop-staging",
                                              {"spec": {"replicas": 7}}, dry_run="All")
    assert result.spec.replicas == 7
    apps.delete_namespaced_deployment("shop-web", "shop-staging", dry_run="All")
    sim.wait_idle()
    assert sim.snapshot() == before


def test_leases_crud(empty_api_client: client.ApiClient) -> None:
    leases = client.CoordinationV1Api(empty_api_client)
    body = {"metadata": {"name": "opsbot-scheduler"},
            "spec": {"holderIdentity": "pod-a", "leaseDurationSeconds": 15,
                     "renewTime": "2024-05-01T12:00:00.000000Z"}}
    created = leases.create_namespaced_lease("default", body)
    created.spec.holder_identity = "pod-b"
    updated = leases.replace_namespaced_lease("opsbot-scheduler", "default", created)
    assert updated.spec.holder_identity == "pod-b"
    created.spec.holder_identity = "pod-c"  # stale resourceVersion: the election is lost
    with pytest.raises(client.ApiException) as err:
        leases.replace_namespaced_lease("opsbot-scheduler", "default", created)
    assert err.value.status == 409
    leases.delete_namespaced_lease("opsbot-scheduler", "default")
    assert leases.list_namespaced_lease("default").items == []


def test_pagination(empty_api_client: client.ApiClient) -> None:
    core = client.CoreV1Api(empty_api_client)
    for index in range(5):
        core.create_namespaced_config_map("default", {"metadata": {"name": f"cm-{index}"}})
    page = core.list_namespaced_config_map("default", limit=2)
    seen = [c.metadata.name for c in page.items]
    while page.metadata._continue:
        page = core.list_namespaced_config_map("default", limit=2,
                                               _continue=page.metadata._continue)
        seen += [c.metadata.name for c in page.items]
    assert seen == [f"cm-{i}" for i in range(5)]


def test_requests_without_the_token_get_401(sim: SimCluster) -> None:
    request = urllib.request.Request(f"{sim.url}/api/v1/namespaces")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=5, context=sim.ssl_context())
    assert err.value.code == 401
    assert b'"reason": "Unauthorized"' in err.value.read()


def test_wrong_token_through_the_client(sim: SimCluster, tmp_path: object) -> None:
    configuration = client.Configuration()
    configuration.host = sim.url
    configuration.ssl_ca_cert = str(sim.ca_file)
    configuration.api_key = {"authorization": "Bearer wrong"}
    with client.ApiClient(configuration) as api, pytest.raises(client.ApiException) as err:
        client.CoreV1Api(api).list_namespace()
    assert err.value.status == 401


def test_events_create_and_list(empty_api_client: client.ApiClient) -> None:
    core = client.CoreV1Api(empty_api_client)
    core.create_namespaced_event("default", {
        "metadata": {"name": "opsbot.1"},
        "involvedObject": {"kind": "Deployment", "name": "web", "namespace": "default"},
        "reason": "OpsbotRestart", "message": "restarted by alice", "type": "Normal",
        "source": {"component": "opsbot"}})
    found = core.list_namespaced_event(
        "default", field_selector="reason=OpsbotRestart,source=opsbot").items
    assert [e.message for e in found] == ["restarted by alice"]


def test_background_controllers_converge_without_help(
        empty_api_client: client.ApiClient) -> None:
    import time

    apps = client.AppsV1Api(empty_api_client)
    apps.create_namespaced_deployment("default", deployment("web", replicas=3))
    deadline, ready = time.monotonic() + 5, None
    while time.monotonic() < deadline and ready != 3:
        status = apps.read_namespaced_deployment("web", "default").status
        ready = status.ready_replicas if status else None  # no status until the first sync
        time.sleep(0.05)
    assert ready == 3
