"""The platform kinds through the real client: Jobs run and fail as the Job controller counts
them, Services get Endpoints, claims are provisioned, bound and expanded, Ingresses and
cert-manager objects are stored, and all of them show in discovery."""

from __future__ import annotations

import pytest
from kubernetes import client

from simcluster import SimCluster

from .helpers import status_of

NS = "shop-staging"
WORKER_LOG = "INFO migrate: step 1\nERROR migrate: relation \"orders\" does not exist\n"


def _job(name: str, *, restart: str = "Never", **spec: object) -> dict[str, object]:
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"template": {"spec": {
            "restartPolicy": restart,
            "containers": [{"name": "migrate", "image": "registry.example.com/shop/api:1.4.0"}],
        }}, **spec},
    }


@pytest.fixture
def batch(kube_api_client: client.ApiClient) -> client.BatchV1Api:
    return client.BatchV1Api(kube_api_client)


@pytest.fixture
def storage(kube_api_client: client.ApiClient) -> client.StorageV1Api:
    return client.StorageV1Api(kube_api_client)


def test_discovery_lists_the_platform_groups(kube_api_client: client.ApiClient) -> None:
    groups = {g.name: g for g in client.ApisApi(kube_api_client).get_api_versions().groups}
    for name in ("batch", "storage.k8s.io", "networking.k8s.io", "cert-manager.io",
                 "acme.cert-manager.io"):
        assert groups[name].preferred_version.version == "v1"
    batch = client.BatchV1Api(kube_api_client).get_api_resources()
    assert {r.name for r in batch.resources} >= {"jobs", "jobs/status", "cronjobs"}
    core = {r.name: r for r in client.CoreV1Api(kube_api_client).get_api_resources().resources}
    assert core["endpoints"].short_names == ["ep"]
    assert core["persistentvolumes"].namespaced is False
    sc = client.StorageV1Api(kube_api_client).get_api_resources().resources
    assert [(r.name, r.namespaced) for r in sc] == [("storageclasses", False)]


def test_job_runs_to_completion(sim: SimCluster, batch: client.BatchV1Api,
                                core: client.CoreV1Api) -> None:
    created = batch.create_namespaced_job(NS, _job("migrate"))
    uid = created.metadata.uid
    assert created.spec.backoff_limit == 6 and created.spec.completions == 1
    assert created.spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": uid}
    assert created.metadata.labels["job-name"] == "migrate"
    sim.wait_idle()
    job = batch.read_namespaced_job("migrate", NS)
    assert job.status.succeeded == 1 and not job.status.failed and not job.status.active
    assert job.status.completion_time and job.status.start_time
    assert {c.type for c in job.status.conditions} == {"SuccessCriteriaMet", "Complete"}
    [pod] = core.list_namespaced_pod(NS, label_selector="job-name=migrate").items
    assert pod.metadata.name.startswith("migrate-") and pod.status.phase == "Succeeded"
    assert pod.metadata.owner_references[0].kind == "Job"
    ended = pod.status.container_statuses[0].state.terminated
    assert (ended.reason, ended.exit_code) == ("Completed", 0)
    assert "done (exit code 0)" in core.read_namespaced_pod_log(pod.metadata.name, NS)
    assert batch.list_namespaced_job(NS, field_selector="status.successful=1").items


def test_failing_job_reaches_its_backoff_limit(sim: SimCluster, batch: client.BatchV1Api,
                                               core: client.CoreV1Api) -> None:
    sim.script_crashloop(NS, "migrate", "migrate", reason="Error", exit_code=3, log=WORKER_LOG)
    batch.create_namespaced_job(NS, _job("migrate", backoffLimit=2))
    sim.wait_idle()
    job = batch.read_namespaced_job("migrate", NS)
    assert job.status.failed == 3 and not job.status.succeeded and not job.status.active
    failed = {c.type: c for c in job.status.conditions}
    assert set(failed) == {"FailureTarget", "Failed"}
    assert failed["Failed"].reason == "BackoffLimitExceeded"
    assert failed["Failed"].message == "Job has reached the specified backoff limit"
    pods = core.list_namespaced_pod(NS, label_selector="job-name=migrate").items
    assert len(pods) == 3 and {p.status.phase for p in pods} == {"Failed"}
    ended = pods[0].status.container_statuses[0].state.terminated
    assert (ended.reason, ended.exit_code) == ("Error", 3)
    log = core.read_namespaced_pod_log(pods[0].metadata.name, NS, tail_lines=1)
    assert log == 'ERROR migrate: relation "orders" does not exist\n'
    events = core.list_namespaced_event(NS, field_selector="involvedObject.name=migrate").items
    assert {e.reason for e in events} >= {"SuccessfulCreate", "BackoffLimitExceeded"}
    before = sim.snapshot()
    sim.manager.run_pass()
    assert sim.snapshot() == before


def test_job_with_on_failure_counts_restarts(sim: SimCluster, batch: client.BatchV1Api,
                                             core: client.CoreV1Api) -> None:
    sim.script_crashloop(NS, "migrate", "migrate", reason="OOMKilled", restarts=3)
    batch.create_namespaced_job(NS, _job("migrate", restart="OnFailure", backoffLimit=2))
    sim.wait_idle()
    job = batch.read_namespaced_job("migrate", NS)
    assert [c.reason for c in job.status.conditions] == ["BackoffLimitExceeded"] * 2
    assert core.list_namespaced_pod(NS, label_selector="job-name=migrate").items == []


def test_job_deadline_and_ttl(sim: SimCluster, batch: client.BatchV1Api) -> None:
    sim.script_crashloop(NS, "slow", "migrate", restarts=0)  # OnFailure: restarts in place
    batch.create_namespaced_job(NS, _job("slow", restart="OnFailure", activeDeadlineSeconds=60,
                                         ttlSecondsAfterFinished=300))
    sim.wait_idle()
    assert not batch.read_namespaced_job("slow", NS).status.conditions
    sim.advance(61)
    sim.wait_idle()
    job = batch.read_namespaced_job("slow", NS)
    assert job.status.conditions[-1].reason == "DeadlineExceeded"
    sim.advance(301)
    sim.wait_idle()
    with pytest.raises(client.ApiException) as err:
        batch.read_namespaced_job("slow", NS)
    assert err.value.status == 404


def test_job_needs_a_batch_restart_policy(batch: client.BatchV1Api) -> None:
    with pytest.raises(client.ApiException) as err:
        batch.create_namespaced_job(NS, _job("bad", restart="Always"))
    assert err.value.status == 422
    assert 'spec.template.spec.restartPolicy: Unsupported value: "Always"' in \
        status_of(err.value)["message"]


def test_services_get_endpoints(sim: SimCluster, core: client.CoreV1Api) -> None:
    endpoints = core.read_namespaced_endpoints("shop-api", NS)
    [subset] = endpoints.subsets
    assert len(subset.addresses) == 3 and not subset.not_ready_addresses
    assert [(p.name, p.port) for p in subset.ports] == [("http", 8080)]
    pods = {p.metadata.name: p.status.pod_ip
            for p in core.list_namespaced_pod(NS, label_selector="app=shop-api").items}
    assert {(a.target_ref.name, a.ip) for a in subset.addresses} == set(pods.items())
    core.create_namespaced_service(NS, {
        "metadata": {"name": "worker"},
        "spec": {"selector": {"app": "shop-worker"}, "ports": [{"port": 9090}]}})
    sim.wait_idle()
    [subset] = core.read_namespaced_endpoints("worker", NS).subsets
    assert not subset.addresses and len(subset.not_ready_addresses) == 1
    core.create_namespaced_service(NS, {
        "metadata": {"name": "nothing"},
        "spec": {"selector": {"app": "nope"}, "ports": [{"port": 80}]}})
    sim.wait_idle()
    assert core.read_namespaced_endpoints("nothing", NS).subsets is None
    core.delete_namespaced_service("worker", NS)
    sim.wait_idle()
    with pytest.raises(client.ApiException):
        core.read_namespaced_endpoints("worker", NS)


def _claim(name: str, size: str = "10Gi", cls: str | None = "standard") -> dict[str, object]:
    spec: dict[str, object] = {"accessModes": ["ReadWriteOnce"],
                               "resources": {"requests": {"storage": size}}}
    if cls is not None:
        spec["storageClassName"] = cls
    return {"metadata": {"name": name}, "spec": spec}


def _class(name: str, **fields: object) -> dict[str, object]:
    return {"metadata": {"name": name}, "provisioner": "ebs.csi.aws.com", **fields}


def test_claims_are_provisioned_and_expanded(sim: SimCluster, core: client.CoreV1Api,
                                             storage: client.StorageV1Api) -> None:
    sc = storage.create_storage_class(_class("standard", allowVolumeExpansion=True))
    assert (sc.reclaim_policy, sc.volume_binding_mode) == ("Delete", "Immediate")
    core.create_namespaced_persistent_volume_claim(NS, _claim("data"))
    sim.wait_idle()
    pvc = core.read_namespaced_persistent_volume_claim("data", NS)
    assert pvc.status.phase == "Bound" and pvc.status.capacity == {"storage": "10Gi"}
    pv = core.read_persistent_volume(pvc.spec.volume_name)
    assert pv.status.phase == "Bound" and pv.spec.claim_ref.name == "data"
    assert pv.spec.csi.driver == "ebs.csi.aws.com"
    core.patch_namespaced_persistent_volume_claim(
        "data", NS, {"spec": {"resources": {"requests": {"storage": "20Gi"}}}})
    sim.wait_idle()
    pvc = core.read_namespaced_persistent_volume_claim("data", NS)
    assert pvc.status.capacity == {"storage": "20Gi"}
    assert core.read_persistent_volume(pvc.spec.volume_name).spec.capacity == {"storage": "20Gi"}
    with pytest.raises(client.ApiException) as err:
        core.patch_namespaced_persistent_volume_claim(
            "data", NS, {"spec": {"resources": {"requests": {"storage": "5Gi"}}}})
    assert err.value.status == 422 and "can not be less than status.capacity" in \
        status_of(err.value)["message"]
    core.delete_namespaced_persistent_volume_claim("data", NS)
    sim.wait_idle()
    assert core.list_persistent_volume().items == []


def test_claim_waits_for_class_or_consumer(sim: SimCluster, core: client.CoreV1Api,
                                           storage: client.StorageV1Api) -> None:
    core.create_namespaced_persistent_volume_claim(NS, _claim("early", cls="fast"))
    sim.wait_idle()
    assert core.read_namespaced_persistent_volume_claim("early", NS).status.phase == "Pending"
    events = core.list_namespaced_event(NS, field_selector="involvedObject.name=early").items
    assert [e.reason for e in events] == ["ProvisioningFailed"]
    storage.create_storage_class(_class("fast", volumeBindingMode="WaitForFirstConsumer",
                                        allowVolumeExpansion=False, metadata={
                                            "name": "fast", "annotations": {
                                                "storageclass.kubernetes.io/is-default-class":
                                                    "true"}}))
    core.create_namespaced_persistent_volume_claim(NS, _claim("plain", cls=None))
    sim.wait_idle()
    plain = core.read_namespaced_persistent_volume_claim("plain", NS)
    assert plain.spec.storage_class_name == "fast" and plain.status.phase == "Pending"
    core.create_namespaced_pod(NS, {
        "metadata": {"name": "user"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}],
                 "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "plain"}}]}})
    sim.wait_idle()
    plain = core.read_namespaced_persistent_volume_claim("plain", NS)
    assert plain.status.phase == "Bound"
    core.patch_namespaced_persistent_volume_claim(
        "plain", NS, {"spec": {"resources": {"requests": {"storage": "50Gi"}}}})
    sim.wait_idle()  # the class does not allow expansion: the request stays unmet
    assert core.read_namespaced_persistent_volume_claim("plain", NS).status.capacity == {
        "storage": "10Gi"}
    before = sim.snapshot()
    sim.manager.run_pass()
    assert sim.snapshot() == before


def test_ingress_and_cert_manager_objects_are_stored(
    sim: SimCluster, kube_api_client: client.ApiClient
) -> None:
    networking = client.NetworkingV1Api(kube_api_client)
    ingress = networking.create_namespaced_ingress(NS, {
        "metadata": {"name": "shop"},
        "spec": {"ingressClassName": "nginx", "rules": [{"host": "shop.example.com", "http": {
            "paths": [{"path": "/api", "pathType": "Prefix", "backend": {
                "service": {"name": "shop-api", "port": {"number": 80}}}}]}}]}})
    assert ingress.metadata.generation == 1 and ingress.status.load_balancer is not None
    rule = networking.read_namespaced_ingress("shop", NS).spec.rules[0]
    assert rule.http.paths[0].backend.service.name == "shop-api"
    custom = client.CustomObjectsApi(kube_api_client)
    cert = {"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": {"name": "shop-tls"},
            "spec": {"secretName": "shop-tls", "dnsNames": ["shop.example.com"],
                     "issuerRef": {"name": "letsencrypt", "kind": "ClusterIssuer"}},
            "status": {"ignored": True}}
    created = custom.create_namespaced_custom_object("cert-manager.io", "v1", NS,
                                                     "certificates", cert)
    assert "status" not in created  # the CRD has a status subresource
    custom.patch_namespaced_custom_object_status(
        "cert-manager.io", "v1", NS, "certificates", "shop-tls",
        {"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Pending"}]}})
    got = custom.get_namespaced_custom_object("cert-manager.io", "v1", NS, "certificates",
                                              "shop-tls")
    assert got["status"]["conditions"][0]["reason"] == "Pending"
    custom.create_cluster_custom_object("cert-manager.io", "v1", "clusterissuers", {
        "apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer",
        "metadata": {"name": "letsencrypt"}, "spec": {"acme": {}}})
    assert custom.get_cluster_custom_object("cert-manager.io", "v1", "clusterissuers",
                                            "letsencrypt")["kind"] == "ClusterIssuer"
