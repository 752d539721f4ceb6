"""The simulated Velero server through the real client: backups with progress, validation,
recorded contents and scripted outcomes; restores into mapped namespaces with the existing-
resource policies; schedules validated and fired on request; a backup's resource list handed
out through a DownloadRequest; namespace deletion."""

from __future__ import annotations

import gzip
import json
import urllib.error
import urllib.request
from datetime import timedelta
from typing import Any

import pytest
from kubernetes import client, watch

from simcluster import SimCluster, velero
from simcluster.clock import parse_time

G, V, NS = "velero.io", "v1", "velero"
EXISTS = ('could not restore, ConfigMap "settings" already exists. Warning: the in-cluster '
          "version is different than the backed-up version")


@pytest.fixture
def custom(kube_api_client: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube_api_client)


def create(custom: client.CustomObjectsApi, plural: str, kind: str, name: str,
           **spec: Any) -> dict[str, Any]:
    body = {"apiVersion": f"{G}/{V}", "kind": kind, "metadata": {"name": name}, "spec": spec}
    result: dict[str, Any] = custom.create_namespaced_custom_object(G, V, NS, plural, body)
    return result


def read(custom: client.CustomObjectsApi, plural: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = custom.get_namespaced_custom_object(G, V, NS, plural, name)
    return result


def backup(sim: SimCluster, custom: client.CustomObjectsApi, name: str,
           **spec: Any) -> dict[str, Any]:
    create(custom, "backups", "Backup", name, **spec)
    sim.wait_idle()
    return read(custom, "backups", name)


def restore(sim: SimCluster, custom: client.CustomObjectsApi, name: str,
            **spec: Any) -> dict[str, Any]:
    create(custom, "restores", "Restore", name, **spec)
    sim.wait_idle()
    return read(custom, "restores", name)


def kinds(sim: SimCluster, name: str) -> list[tuple[str, str, str]]:
    return [(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])
            for o in sim.backup_contents(name) or []]


def configmap(core: client.CoreV1Api, namespace: str, name: str, data: dict[str, str],
              labels: dict[str, str] | None = None) -> None:
    core.create_namespaced_config_map(namespace, {"metadata": {"name": name, "labels": labels},
                                                  "data": data})


def test_seed_has_an_available_default_location(custom: client.CustomObjectsApi) -> None:
    location = read(custom, "backupstoragelocations", "default")
    assert location["spec"]["default"] is True
    assert location["status"]["phase"] == "Available"
    assert location["status"]["lastValidationTime"]


def test_backup_completes_with_progress_a_watcher_can_follow(
        custom: client.CustomObjectsApi) -> None:
    made = create(custom, "backups", "Backup", "staging-1", includedNamespaces=["shop-staging"])
    seen: list[dict[str, Any]] = []
    stream = watch.Watch()
    for event in stream.stream(custom.list_namespaced_custom_object, G, V, NS, "backups",
                               field_selector="metadata.name=staging-1", timeout_seconds=10,
                               resource_version=made["metadata"]["resourceVersion"]):
        seen.append(event["object"].get("status") or {})
        if seen[-1].get("phase") == "Completed":
            stream.stop()
    # One change per controller pass: started, a third, two thirds, all, finalizing, done.
    assert [s["phase"] for s in seen] == ["InProgress"] * 4 + ["Finalizing", "Completed"]
    assert [s["progress"].get("itemsBackedUp", 0) for s in seen[:4]] == [0, 3, 6, 7]
    status = seen[-1]
    assert status["progress"] == {"totalItems": 7, "itemsBackedUp": 7}
    assert "errors" not in status and "warnings" not in status  # omitempty, as Velero writes
    started = parse_time(status["startTimestamp"])
    assert parse_time(status["expiration"]) - started == timedelta(hours=720)
    assert parse_time(status["completionTimestamp"]) >= started
    made = read(custom, "backups", "staging-1")
    assert made["metadata"]["labels"]["velero.io/storage-location"] == "default"
    assert made["spec"]["storageLocation"] == "default" and made["spec"]["ttl"] == "720h0m0s"


def test_ttl_is_a_go_duration(sim: SimCluster, custom: client.CustomObjectsApi) -> None:
    for name, ttl, hours in (("day", "24h", 24), ("long", "1.5h30m", 2)):
        status = backup(sim, custom, name, includedNamespaces=["shop-prod"], ttl=ttl)["status"]
        assert status["phase"] == "Completed"
        expires = parse_time(status["expiration"]) - parse_time(status["startTimestamp"])
        assert expires == timedelta(hours=hours)


@pytest.mark.parametrize(("ttl", "said"), [
    ("9999999999h", 'time: invalid duration "9999999999h"'),  # past Go's int64 nanoseconds
    ("٣h", 'time: invalid duration "٣h"'),  # Go reads the digits 0-9 only
])
def test_a_ttl_go_refuses_fails_validation(sim: SimCluster, custom: client.CustomObjectsApi,
                                           ttl: str, said: str) -> None:
    status = backup(sim, custom, "odd-ttl", includedNamespaces=["shop-prod"], ttl=ttl)["status"]
    assert status["phase"] == "FailedValidation"
    assert status["validationErrors"] == [f"Invalid ttl: {said}"]


def test_failed_validation(sim: SimCluster, custom: client.CustomObjectsApi) -> None:
    status = backup(sim, custom, "elsewhere", storageLocation="offsite")["status"]
    assert status["phase"] == "FailedValidation"
    assert status["validationErrors"] == [
        "an existing backup storage location wasn't specified at backup creation time and the "
        "default 'offsite' wasn't found. Please address this issue (see `velero backup-location "
        "-h` for options) and create a new backup. Error: backupstoragelocations.velero.io "
        '"offsite" not found']
    status = backup(sim, custom, "bad-spec", includedNamespaces=["*", "shop-prod"],
                    excludedResources=["*"], ttl="forever")["status"]
    assert status["phase"] == "FailedValidation" and "startTimestamp" not in status
    assert status["validationErrors"] == [
        'Invalid ttl: time: invalid duration "forever"',
        "Invalid included/excluded resource lists: excludes list cannot contain '*'",
        "Invalid included/excluded namespace lists: includes list must either contain '*' only, "
        "or a non-empty list of items"]
    assert sim.backup_contents("bad-spec") is None


def test_contents_per_namespace_selector_and_resource(
        sim: SimCluster, custom: client.CustomObjectsApi, core: client.CoreV1Api) -> None:
    configmap(core, "shop-prod", "web-settings", {"a": "1"}, {"app": "shop-web"})
    configmap(core, "shop-staging", "web-settings", {"a": "1"}, {"app": "shop-web"})
    backup(sim, custom, "web", includedNamespaces=["shop-prod"],
           labelSelector={"matchLabels": {"app": "shop-web"}})
    assert kinds(sim, "web") == [
        ("Namespace", "", "shop-prod"), ("ConfigMap", "shop-prod", "web-settings"),
        ("Deployment", "shop-prod", "shop-web"), ("Service", "shop-prod", "shop-web")]
    backup(sim, custom, "not-api", includedNamespaces=["shop-*"], labelSelector={
        "matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["shop-api"]}]},
        includedResources=["deployments.apps", "cm"])
    assert kinds(sim, "not-api") == [
        ("Namespace", "", "shop-prod"), ("Namespace", "", "shop-staging"),
        ("ConfigMap", "shop-prod", "web-settings"), ("ConfigMap", "shop-staging", "web-settings"),
        ("Deployment", "shop-prod", "shop-web"), ("Deployment", "shop-staging", "shop-web"),
        ("Deployment", "shop-staging", "shop-worker")]
    everything = backup(sim, custom, "all", includedNamespaces=["*"],
                        excludedResources=["services"])
    recorded = kinds(sim, "all")
    assert everything["status"]["progress"]["totalItems"] == len(recorded)
    # No pods, replica sets, endpoints or events; no Velero backups either.
    assert {k for k, _, _ in recorded} == {"Namespace", "ConfigMap", "Deployment",
                                           "HorizontalPodAutoscaler", "BackupStorageLocation"}
    copy = next(o for o in sim.backup_contents("all") or []
                if o["metadata"]["name"] == "shop-api" and o["kind"] == "Deployment")
    assert copy["status"]["readyReplicas"] == 3  # a copy of the stored object, status and all


def test_scripted_partial_failure_failure_and_hang(
        sim: SimCluster, custom: client.CustomObjectsApi) -> None:
    sim.script_backup("partial-", "PartiallyFailed", errors=3, warnings=2)
    sim.script_backup("broken-", "Failed", failure_reason="rpc error: NoSuchBucket")
    sim.script_backup("stuck-", "hang")
    status = backup(sim, custom, "partial-1", includedNamespaces=["shop-staging"])["status"]
    assert (status["phase"], status["errors"], status["warnings"]) == ("PartiallyFailed", 3, 2)
    assert status["progress"] == {"totalItems": 7, "itemsBackedUp": 7}
    assert len(kinds(sim, "partial-1")) == 7
    status = backup(sim, custom, "broken-1", includedNamespaces=["shop-staging"])["status"]
    assert (status["phase"], status["failureReason"]) == ("Failed", "rpc error: NoSuchBucket")
    assert status["completionTimestamp"] and sim.backup_contents("broken-1") is None
    status = backup(sim, custom, "stuck-1", includedNamespaces=["shop-staging"])["status"]
    assert status["phase"] == "InProgress" and status["progress"]["itemsBackedUp"] == 3
    sim.advance(3600)
    sim.wait_idle()
    assert read(custom, "backups", "stuck-1")["status"] == status
    sim.clear_scripts()
    assert backup(sim, custom, "stuck-2")["status"]["phase"] == "Completed"


def test_unavailable_location_fails_the_backup(sim: SimCluster,
                                               custom: client.CustomObjectsApi) -> None:
    custom.patch_namespaced_custom_object(G, V, NS, "backupstoragelocations", "default", {
        "status": {"phase": "Unavailable", "message": "rpc error: NoSuchBucket"}})
    status = backup(sim, custom, "nightly", includedNamespaces=["shop-prod"])["status"]
    assert (status["phase"], status["failureReason"]) == (
        "Failed", "error checking if backup already exists in object storage: rpc error: "
                  "NoSuchBucket")


def test_restore_into_a_mapped_namespace(sim: SimCluster, custom: client.CustomObjectsApi,
                                         core: client.CoreV1Api,
                                         apps: client.AppsV1Api) -> None:
    backup(sim, custom, "prod-1", includedNamespaces=["shop-prod"])
    create(custom, "restores", "Restore", "prod-1-verify", backupName="prod-1",
           namespaceMapping={"shop-prod": "verify-prod"})
    sim.wait_idle()
    done = read(custom, "restores", "prod-1-verify")
    status = done["status"]
    assert status["phase"] == "Completed" and status["progress"] == {"totalItems": 6,
                                                                      "itemsRestored": 6}
    assert "warnings" not in status and "errors" not in status
    assert parse_time(status["completionTimestamp"]) >= parse_time(status["startTimestamp"])
    assert "backups.velero.io" in done["spec"]["excludedResources"]
    assert core.read_namespace("verify-prod").status.phase == "Active"
    for name, replicas in (("shop-api", 3), ("shop-web", 2)):
        dep = apps.read_namespaced_deployment(name, "verify-prod")
        assert dep.status.ready_replicas == replicas
        assert dep.metadata.labels["velero.io/backup-name"] == "prod-1"
        assert dep.metadata.labels["velero.io/restore-name"] == "prod-1-verify"
    pods = core.list_namespaced_pod("verify-prod", label_selector="app=shop-api").items
    assert len(pods) == 3 and all(p.status.phase == "Running" for p in pods)
    service = core.read_namespaced_service("shop-api", "verify-prod")
    assert service.spec.cluster_ip != core.read_namespaced_service("shop-api",
                                                                    "shop-prod").spec.cluster_ip
    assert sim.restore_results("prod-1-verify") == {
        "warnings": {"velero": [], "cluster": [], "namespaces": {}},
        "errors": {"velero": [], "cluster": [], "namespaces": {}}}


def test_existing_resource_policy_none_then_update(
        sim: SimCluster, custom: client.CustomObjectsApi, core: client.CoreV1Api) -> None:
    configmap(core, "shop-staging", "settings", {"level": "info"})
    backup(sim, custom, "before", includedNamespaces=["shop-staging"])
    core.patch_namespaced_config_map("settings", "shop-staging", {"data": {"level": "debug"}})
    status = restore(sim, custom, "keep", backupName="before")["status"]
    # Unchanged objects are skipped quietly; the changed one is kept, with a warning.
    assert (status["phase"], status["warnings"]) == ("Completed", 1)
    assert sim.restore_results("keep")["warnings"]["namespaces"] == {  # type: ignore[index]
        "shop-staging": [EXISTS]}
    assert core.read_namespaced_config_map("settings", "shop-staging").data == {"level": "debug"}
    status = restore(sim, custom, "overwrite", backupName="before",
                     existingResourcePolicy="update")["status"]
    assert status["phase"] == "Completed" and "warnings" not in status
    settings = core.read_namespaced_config_map("settings", "shop-staging")
    assert settings.data == {"level": "info"}
    assert settings.metadata.labels["velero.io/restore-name"] == "overwrite"


def test_restore_validation(sim: SimCluster, custom: client.CustomObjectsApi) -> None:
    sim.script_backup("broken-", "Failed")
    backup(sim, custom, "broken-1", includedNamespaces=["shop-prod"])
    for name, spec, errors in (
        ("missing", {"backupName": "nope"},
         ['Error retrieving backup: backups.velero.io "nope" not found']),
        ("of-failed", {"backupName": "broken-1"},
         ["backup broken-1 is in phase Failed: only Completed or PartiallyFailed backups can "
          "be restored"]),
        ("no-source", {"existingResourcePolicy": "replace"},
         ["Invalid ExistingResourcePolicy: replace",
          "Either a backup or schedule must be specified as a source for the restore, but not "
          "both"]),
    ):
        status = restore(sim, custom, name, **spec)["status"]
        assert (status["phase"], status["validationErrors"]) == ("FailedValidation", errors)
        assert "startTimestamp" not in status


def test_scripted_restore_outcomes(sim: SimCluster, custom: client.CustomObjectsApi,
                                   apps: client.AppsV1Api) -> None:
    backup(sim, custom, "prod-2", includedNamespaces=["shop-prod"])
    sim.script_restore("partial-", "PartiallyFailed", errors=2)
    sim.script_restore("broken-", "Failed", failure_reason="timed out")
    sim.script_restore("stuck-", "hang")
    mapping = {"namespaceMapping": {"shop-prod": "scratch-a"}, "backupName": "prod-2"}
    status = restore(sim, custom, "partial-1", **mapping)["status"]
    assert (status["phase"], status["errors"]) == ("PartiallyFailed", 2)
    assert apps.read_namespaced_deployment("shop-web", "scratch-a").status.ready_replicas == 2
    mapping["namespaceMapping"] = {"shop-prod": "scratch-b"}
    status = restore(sim, custom, "broken-1", **mapping)["status"]
    assert (status["phase"], status["failureReason"]) == ("Failed", "timed out")
    assert status["progress"]["itemsRestored"] < status["progress"]["totalItems"]
    mapping["namespaceMapping"] = {"shop-prod": "scratch-c"}
    status = restore(sim, custom, "stuck-1", **mapping)["status"]
    assert status["phase"] == "InProgress" and status["progress"] == {"totalItems": 6,
                                                                      "itemsRestored": 3}


def test_schedule_validation(sim: SimCluster, custom: client.CustomObjectsApi) -> None:
    cases = {"nightly": ("0 2 * * *", "Enabled", None),
             "weekdays": ("30 6 * JAN-DEC MON-FRI", "Enabled", None),
             "hourly": ("@every 1h", "Enabled", None),
             "bad-hour": ("0 25 * * *", "FailedValidation",
                          ["invalid schedule: End of range (25) above maximum (23): 25"]),
             "words": ("every night", "FailedValidation",
                       ["invalid schedule: Expected exactly 5 fields, found 2: every night"]),
             "blank": ("", "FailedValidation",
                       ["Schedule must be a non-empty valid Cron expression"])}
    for name, (cron, _, _) in cases.items():
        create(custom, "schedules", "Schedule", name, schedule=cron, template={})
    create(custom, "schedules", "Schedule", "held", schedule="bogus", paused=True, template={})
    sim.wait_idle()
    for name, (_, phase, errors) in cases.items():
        status = read(custom, "schedules", name)["status"]
        assert (status["phase"], status.get("validationErrors")) == (phase, errors), name
    assert "status" not in read(custom, "schedules", "held")  # paused: not even validated


def test_run_schedule(sim: SimCluster, custom: client.CustomObjectsApi) -> None:
    create(custom, "schedules", "Schedule", "shop-daily", schedule="0 2 * * *",
           template={"includedNamespaces": ["shop-staging"], "ttl": "168h0m0s"})
    sim.wait_idle()
    made = sim.run_schedule(NS, "shop-daily")
    assert made is not None
    name = made["metadata"]["name"]
    assert made["metadata"]["labels"] == {"velero.io/schedule-name": "shop-daily"}
    assert made["spec"] == {"includedNamespaces": ["shop-staging"], "ttl": "168h0m0s"}
    assert sim.run_schedule(NS, "shop-daily") is None  # the first run is still New
    sim.wait_idle()
    assert read(custom, "backups", name)["status"]["phase"] == "Completed"
    last = parse_time(read(custom, "schedules", "shop-daily")["status"]["lastBackup"])
    assert name == f"shop-daily-{last:%Y%m%d%H%M%S}"
    listed = custom.list_namespaced_custom_object(
        G, V, NS, "backups", label_selector="velero.io/schedule-name=shop-daily")
    assert [b["metadata"]["name"] for b in listed["items"]] == [name]
    custom.patch_namespaced_custom_object(G, V, NS, "schedules", "shop-daily",
                                          {"spec": {"paused": True}})
    with pytest.raises(ValueError, match="paused"):
        sim.run_schedule(NS, "shop-daily")
    with pytest.raises(LookupError):
        sim.run_schedule(NS, "nope")
    restored = restore(sim, custom, "from-schedule", scheduleName="shop-daily",
                       namespaceMapping={"shop-staging": "from-schedule"})
    assert restored["spec"]["backupName"] == name
    assert restored["status"]["phase"] == "Completed"


def _admin(sim: SimCluster, path: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(f"{sim.url}{path}", data=json.dumps(body).encode(),
                                     method="POST", headers={
                                         "Authorization": f"Bearer {sim.token}",
                                         "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5, context=sim.ssl_context()) as response:
        return json.loads(response.read())


def test_admin_api(sim: SimCluster, custom: client.CustomObjectsApi) -> None:
    assert _admin(sim, "/_sim/backup-outcome", {"name_prefix": "nightly-", "outcome": "Failed",
                                                "failure_reason": "disk full"}) == {
        "scripted": "backup-outcome"}
    assert _admin(sim, "/_sim/restore-outcome", {"name_prefix": "check-", "outcome": "hang"}) == {
        "scripted": "restore-outcome"}
    with pytest.raises(urllib.error.HTTPError) as err:
        _admin(sim, "/_sim/backup-outcome", {"name_prefix": "x", "outcome": "Exploded"})
    assert err.value.code == 400
    create(custom, "schedules", "Schedule", "nightly", schedule="0 3 * * *",
           template={"includedNamespaces": ["shop-prod"]})
    made = _admin(sim, "/_sim/run-schedule", {"name": "nightly"})["backup"]
    assert _admin(sim, "/_sim/run-schedule", {"namespace": NS, "name": "nightly"}) == {
        "backup": None, "skipped": "a backup of the schedule is still New or InProgress"}
    sim.wait_idle()
    status = read(custom, "backups", made["metadata"]["name"])["status"]
    assert (status["phase"], status["failureReason"]) == ("Failed", "disk full")


def test_namespace_deletion_leaves_nothing(sim: SimCluster, custom: client.CustomObjectsApi,
                                           core: client.CoreV1Api) -> None:
    backup(sim, custom, "staging-2", includedNamespaces=["shop-staging"])
    restore(sim, custom, "scratch", backupName="staging-2",
            namespaceMapping={"shop-staging": "scratch"})
    assert any("/scratch/" in key for key in sim.snapshot())
    core.delete_namespace("scratch")
    sim.wait_idle()
    assert not [key for key in sim.snapshot() if "/scratch/" in key or key.endswith("//scratch")]
    with pytest.raises(client.ApiException) as err:
        core.read_namespace("scratch")
    assert err.value.status == 404


def test_download_request_hands_out_the_resource_list(
        sim: SimCluster, custom: client.CustomObjectsApi) -> None:
    target = {"kind": "BackupResourceList", "name": "api-1"}
    create(custom, "downloadrequests", "DownloadRequest", "early", target=target)
    create(custom, "downloadrequests", "DownloadRequest", "logs",
           target={"kind": "BackupLog", "name": "api-1"})
    sim.wait_idle()
    assert "phase" not in read(custom, "downloadrequests", "early").get("status", {})  # no backup
    backup(sim, custom, "api-1", includedNamespaces=["shop-staging"],
           labelSelector={"matchLabels": {"app": "shop-api"}})
    sim.wait_idle()
    status = read(custom, "downloadrequests", "early")["status"]
    assert status["phase"] == "Processed"
    # Served by object storage, not the API server: plain HTTP on a port of its own.
    assert status["downloadURL"].startswith("http://127.0.0.1:")
    assert "/_velero/downloads/" in status["downloadURL"]
    assert not status["downloadURL"].startswith(sim.url)
    expires_in = parse_time(status["expiration"]) - sim.clock.now()
    assert timedelta(minutes=9) < expires_in <= timedelta(minutes=10)
    # The URL is signed: the token in it is the credential, no bearer token is sent.
    with urllib.request.urlopen(status["downloadURL"], timeout=5) as response:
        assert response.headers["Content-Type"] == "application/gzip"
        listed = json.loads(gzip.decompress(response.read()))
    assert listed == {"v1/Namespace": ["shop-staging"],
                      "apps/v1/Deployment": ["shop-staging/shop-api"],
                      "autoscaling/v2/HorizontalPodAutoscaler": ["shop-staging/shop-api"],
                      "v1/Service": ["shop-staging/shop-api"]}
    assert "phase" not in read(custom, "downloadrequests", "logs").get("status", {})  # not modelled
    with pytest.raises(urllib.error.HTTPError) as err:
        storage = status["downloadURL"].split("/_velero/")[0]
        urllib.request.urlopen(f"{storage}/_velero/downloads/guessed", timeout=5)
    assert err.value.code == 404


def test_exports() -> None:
    """What the rest of the simulated cluster (SimCluster, the admin API) imports; pin it."""
    assert velero.__all__ == ["DEFAULT_FAILURE", "NAMESPACE", "OUTCOMES", "Outcome",
                              "OutcomeScript", "Velero", "parse_outcome"]
