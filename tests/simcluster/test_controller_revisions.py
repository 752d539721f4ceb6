"""StatefulSet ControllerRevisions as the real controller keeps them: `data` is the patch
`{"spec": {"template": {..., "$patch": "replace"}}}` (getPatch), a strategic merge of it puts
the template back and touches nothing else, and a template equal to an older revision re-uses
that revision under the next number (what `kubectl rollout undo statefulset` relies on)."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from simcluster import SimCluster
from simcluster.patches import STRATEGIC, apply_patch
from tests.simcluster.helpers import deployment, raw_patch

NS = "default"
STS = f"/apis/apps/v1/namespaces/{NS}/statefulsets/db"


def _statefulset() -> dict[str, Any]:
    body = deployment("db", image="postgres:16.4", replicas=2)
    body["kind"] = "StatefulSet"
    body["spec"]["serviceName"] = "db"
    return body


def _revisions(api: client.ApiClient) -> dict[str, Any]:
    listed = client.AppsV1Api(api).list_namespaced_controller_revision(NS,
                                                                       label_selector="app=db")
    return {r.metadata.name: r for r in listed.items}


def test_revision_data_is_the_template_replace_patch(empty_api_client: client.ApiClient,
                                                     empty_sim: SimCluster) -> None:
    apps = client.AppsV1Api(empty_api_client)
    apps.create_namespaced_stateful_set(NS, _statefulset())
    empty_sim.wait_idle()
    sts = empty_sim.get(STS)
    assert sts is not None
    [(name, revision)] = _revisions(empty_api_client).items()
    assert name == sts["status"]["updateRevision"]
    assert revision.revision == 1
    assert revision.data == {"spec": {"template": {**sts["spec"]["template"],
                                                   "$patch": "replace"}}}
    [owner] = revision.metadata.owner_references
    assert (owner.kind, owner.name, owner.uid, owner.controller) == (
        "StatefulSet", "db", sts["metadata"]["uid"], True)


def test_strategic_merge_replace_directive_on_the_template_only() -> None:
    target = {"spec": {"replicas": 3, "serviceName": "db",
                       "template": {"metadata": {"labels": {"app": "db"},
                                                 "annotations": {"restartedAt": "x"}},
                                    "spec": {"containers": [
                                        {"name": "db", "image": "postgres:16.5",
                                         "env": [{"name": "MODE", "value": "fast"}]}]}}}}
    patch = {"spec": {"template": {"metadata": {"labels": {"app": "db"}},
                                   "spec": {"containers": [{"name": "db",
                                                            "image": "postgres:16.4"}]},
                                   "$patch": "replace"}}}
    assert apply_patch(target, patch, STRATEGIC) == {"spec": {
        "replicas": 3, "serviceName": "db",
        "template": {"metadata": {"labels": {"app": "db"}},
                     "spec": {"containers": [{"name": "db", "image": "postgres:16.4"}]}}}}


def test_undo_patch_restores_template_and_reuses_the_revision(
        empty_api_client: client.ApiClient, empty_sim: SimCluster) -> None:
    apps, core = client.AppsV1Api(empty_api_client), client.CoreV1Api(empty_api_client)
    apps.create_namespaced_stateful_set(NS, _statefulset())
    empty_sim.wait_idle()
    first = empty_sim.get(STS)["status"]["updateRevision"]  # type: ignore[index]
    original = empty_sim.get(STS)["spec"]["template"]  # type: ignore[index]
    apps.patch_namespaced_stateful_set("db", NS, {"spec": {"template": {
        "metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2024-05-01T12:00:00Z"}},
        "spec": {"containers": [{"name": "app", "image": "postgres:16.5",
                                 "env": [{"name": "MODE", "value": "fast"}]}]},
    }}})
    empty_sim.wait_idle()
    second = empty_sim.get(STS)["status"]["updateRevision"]  # type: ignore[index]
    assert second != first
    assert {n: r.revision for n, r in _revisions(empty_api_client).items()} == {first: 1,
                                                                               second: 2}

    # `kubectl rollout undo statefulset/db`: revision 1's data as a strategic merge patch.
    data = _revisions(empty_api_client)[first].data
    raw_patch(empty_api_client, f"/apis/apps/v1/namespaces/{NS}/statefulsets/db", data,
              STRATEGIC)
    empty_sim.wait_idle()
    sts = empty_sim.get(STS)
    assert sts is not None
    assert sts["spec"]["template"] == original  # env and annotation gone, no `$patch` kept
    assert (sts["spec"]["replicas"], sts["spec"]["serviceName"]) == (2, "db")
    # No new ControllerRevision: the equal one moves to the next number.
    assert {n: r.revision for n, r in _revisions(empty_api_client).items()} == {first: 3,
                                                                               second: 2}
    assert sts["status"]["currentRevision"] == sts["status"]["updateRevision"] == first
    pods = core.list_namespaced_pod(NS).items
    assert {p.metadata.labels["controller-revision-hash"] for p in pods} == {first}
    assert {p.spec.containers[0].image for p in pods} == {"postgres:16.4"}
