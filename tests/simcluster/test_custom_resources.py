"""Custom resources are stored free-form through CustomObjectsApi (velero.io, argoproj.io and
groups nobody registered), with status subresource and merge patches."""

from __future__ import annotations

import pytest
from kubernetes import client

from .helpers import raw_patch, status_of

BACKUP = {
    "apiVersion": "velero.io/v1", "kind": "Backup",
    "metadata": {"name": "shop-api-20240501", "labels": {"app": "shop-api"}},
    "spec": {"includedNamespaces": ["shop-staging"], "ttl": "720h0m0s"},
}


@pytest.fixture
def custom(kube_api_client: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube_api_client)


def test_velero_backup_crud(custom: client.CustomObjectsApi) -> None:
    created = custom.create_namespaced_custom_object("velero.io", "v1", "velero", "backups",
                                                     BACKUP)
    assert created["metadata"]["uid"] and created["metadata"]["generation"] == 1
    patched = custom.patch_namespaced_custom_object(
        "velero.io", "v1", "velero", "backups", "shop-api-20240501",
        {"status": {"phase": "Completed"}, "metadata": {"labels": {"verified": "yes"}}})
    assert patched["status"]["phase"] == "Completed"
    listed = custom.list_namespaced_custom_object("velero.io", "v1", "velero", "backups",
                                                  label_selector="verified=yes")
    assert listed["kind"] == "BackupList"
    assert [b["metadata"]["name"] for b in listed["items"]] == ["shop-api-20240501"]
    assert listed["metadata"]["resourceVersion"]
    custom.delete_namespaced_custom_object("velero.io", "v1", "velero", "backups",
                                           "shop-api-20240501")
    with pytest.raises(client.ApiException) as err:
        custom.get_namespaced_custom_object("velero.io", "v1", "velero", "backups",
                                            "shop-api-20240501")
    assert status_of(err.value)["message"] == 'backups.velero.io "shop-api-20240501" not found'


def test_rollout_status_subresource(custom: client.CustomObjectsApi) -> None:
    rollout = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
               "metadata": {"name": "shop-api"}, "spec": {"replicas": 3},
               "status": {"phase": "Ignored"}}
    created = custom.create_namespaced_custom_object("argoproj.io", "v1alpha1", "shop-staging",
                                                     "rollouts", rollout)
    assert "status" not in created  # status subresource: create ignores status
    custom.patch_namespaced_custom_object_status(
        "argoproj.io", "v1alpha1", "shop-staging", "rollouts", "shop-api",
        {"status": {"phase": "Paused"}})
    updated = custom.patch_namespaced_custom_object(
        "argoproj.io", "v1alpha1", "shop-staging", "rollouts", "shop-api",
        {"spec": {"replicas": 4}, "status": {"phase": "Healthy"}})
    assert updated["spec"]["replicas"] == 4 and updated["status"]["phase"] == "Paused"
    assert updated["metadata"]["generation"] == 2


def test_unregistered_group_and_cluster_scope(custom: client.CustomObjectsApi,
                                              kube_api_client: client.ApiClient) -> None:
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"},
              "spec": {"size": 3, "colors": ["red"]}}
    custom.create_namespaced_custom_object("example.com", "v1", "default", "widgets", widget)
    got = custom.get_namespaced_custom_object("example.com", "v1", "default", "widgets", "w1")
    assert got["kind"] == "Widget" and got["spec"] == {"size": 3, "colors": ["red"]}
    raw_patch(kube_api_client, "/apis/example.com/v1/namespaces/default/widgets/w1",
              [{"op": "add", "path": "/spec/colors/-", "value": "blue"}],
              "application/json-patch+json")
    got = custom.get_namespaced_custom_object("example.com", "v1", "default", "widgets", "w1")
    assert got["spec"]["colors"] == ["red", "blue"]
    with pytest.raises(client.ApiException) as err:
        raw_patch(kube_api_client, "/apis/example.com/v1/namespaces/default/widgets/w1",
                  {"spec": {"size": 1}}, "application/strategic-merge-patch+json")
    assert err.value.status == 415
    everywhere = custom.list_cluster_custom_object("example.com", "v1", "widgets")
    assert [w["metadata"]["namespace"] for w in everywhere["items"]] == ["default"]
    assert custom.list_cluster_custom_object("example.com", "v1", "gadgets")["items"] == []

    region = {"apiVersion": "infra.example.com/v1", "kind": "Region",
              "metadata": {"name": "eu-1"}, "spec": {"zones": 3}}
    custom.create_cluster_custom_object("infra.example.com", "v1", "regions", region)
    got = custom.get_cluster_custom_object("infra.example.com", "v1", "regions", "eu-1")
    assert "namespace" not in got["metadata"]
    custom.delete_cluster_custom_object("infra.example.com", "v1", "regions", "eu-1")
    assert custom.list_cluster_custom_object("infra.example.com", "v1", "regions")["items"] == []


def test_custom_resource_conflict(custom: client.CustomObjectsApi) -> None:
    # In `default`: the simulated Velero only acts on its own namespace, so nothing writes
    # between these calls.
    created = custom.create_namespaced_custom_object("velero.io", "v1", "default", "backups",
                                                     BACKUP)
    unchanged = custom.replace_namespaced_custom_object("velero.io", "v1", "default", "backups",
                                                        "shop-api-20240501", created)
    # a no-op update keeps the resourceVersion, as the real API server does
    assert unchanged["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    created["spec"]["ttl"] = "24h0m0s"
    custom.replace_namespaced_custom_object("velero.io", "v1", "default", "backups",
                                            "shop-api-20240501", created)
    with pytest.raises(client.ApiException) as err:
        custom.replace_namespaced_custom_object("velero.io", "v1", "default", "backups",
                                                "shop-api-20240501", created)
    assert err.value.status == 409
