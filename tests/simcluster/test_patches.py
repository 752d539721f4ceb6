"""The three patch content types, chosen as the real client chooses them (dict body ->
strategic merge, list body -> JSON patch) or sent explicitly (merge patch)."""

from __future__ import annotations

import pytest
from kubernetes import client

from simcluster import SimCluster

from .helpers import deployment, raw_patch, status_of

PATH = "/apis/apps/v1/namespaces/default/deployments/web"


@pytest.fixture
def apps(empty_api_client: client.ApiClient, empty_sim: SimCluster) -> client.AppsV1Api:
    api = client.AppsV1Api(empty_api_client)
    body = deployment("web")
    body["spec"]["template"]["spec"]["containers"] = [
        {"name": "app", "image": "registry.example.com/web:1",
         "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
         "ports": [{"containerPort": 8080, "name": "http"}]},
        {"name": "sidecar", "image": "registry.example.com/proxy:1"},
    ]
    api.create_namespaced_deployment("default", body)
    empty_sim.wait_idle()
    return api


def _containers(dep: client.V1Deployment) -> dict[str, client.V1Container]:
    return {c.name: c for c in dep.spec.template.spec.containers}


def test_strategic_merge_merges_lists_by_name(apps: client.AppsV1Api) -> None:
    patched = apps.patch_namespaced_deployment("web", "default", {"spec": {"template": {"spec": {
        "containers": [{"name": "app", "image": "registry.example.com/web:2",
                        "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}]}]}}}})
    containers = _containers(patched)
    assert set(containers) == {"app", "sidecar"}
    assert containers["app"].image == "registry.example.com/web:2"
    assert [(e.name, e.value) for e in containers["app"].env] == [("A", "1"), ("B", "20"),
                                                                    ("C", "3")]
    assert containers["app"].ports[0].container_port == 8080
    assert containers["sidecar"].image == "registry.example.com/proxy:1"


def test_strategic_merge_delete_directive(apps: client.AppsV1Api) -> None:
    patched = apps.patch_namespaced_deployment("web", "default", {"spec": {"template": {"spec": {
        "containers": [{"name": "sidecar", "$patch": "delete"}]}}}})
    assert list(_containers(patched)) == ["app"]


def test_merge_patch_replaces_lists(empty_api_client: client.ApiClient,
                                    apps: client.AppsV1Api) -> None:
    raw_patch(empty_api_client, PATH, {"spec": {"template": {"spec": {"containers": [
        {"name": "only", "image": "registry.example.com/only:1"}]}}}},
        "application/merge-patch+json")
    assert list(_containers(apps.read_namespaced_deployment("web", "default"))) == ["only"]
    raw_patch(empty_api_client, PATH, {"metadata": {"labels": {"app": None, "x": "1"}}},
              "application/merge-patch+json")
    assert apps.read_namespaced_deployment("web", "default").metadata.labels == {"x": "1"}


def test_json_patch_with_test_operation(apps: client.AppsV1Api) -> None:
    patched = apps.patch_namespaced_deployment("web", "default", [
        {"op": "test", "path": "/spec/replicas", "value": 2},
        {"op": "replace", "path": "/spec/replicas", "value": 5},
        {"op": "add", "path": "/metadata/annotations", "value": {"a/b": "c"}},
        {"op": "add", "path": "/spec/template/spec/containers/0/env/-",
         "value": {"name": "Z", "value": "26"}},
    ])
    assert patched.spec.replicas == 5
    assert patched.metadata.annotations["a/b"] == "c"
    assert [e.name for e in _containers(patched)["app"].env] == ["A", "B", "Z"]
    with pytest.raises(client.ApiException) as err:
        apps.patch_namespaced_deployment("web", "default", [
            {"op": "test", "path": "/spec/replicas", "value": 2},
            {"op": "replace", "path": "/spec/replicas", "value": 9},
        ])
    assert err.value.status == 422
    assert status_of(err.value)["reason"] == "Invalid"
    assert apps.read_namespaced_deployment("web", "default").spec.replicas == 5


def test_patch_carrying_stale_resource_version_conflicts(apps: client.AppsV1Api) -> None:
    current = apps.read_namespaced_deployment("web", "default").metadata.resource_version
    apps.patch_namespaced_deployment("web", "default", {"metadata": {
        "resourceVersion": current, "labels": {"seen": "yes"}}})
    with pytest.raises(client.ApiException) as err:
        apps.patch_namespaced_deployment("web", "default", {"metadata": {
            "resourceVersion": current, "labels": {"seen": "twice"}}})
    assert err.value.status == 409


def test_server_side_apply_merges_the_applied_configuration(
        empty_api_client: client.ApiClient, apps: client.AppsV1Api) -> None:
    """Simplified server-side apply: the applied fields are merged in; field ownership is not
    modelled (docs/simcluster.md)."""
    raw_patch(empty_api_client, PATH + "?fieldManager=me", {"spec": {"replicas": 1}},
              "application/apply-patch+yaml")
    applied = apps.read_namespaced_deployment("web", "default")
    assert applied.spec.replicas == 1
    assert applied.spec.template.spec.containers  # the rest is kept
