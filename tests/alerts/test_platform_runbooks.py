"""The built-in platform alert runbooks: kube-prometheus-style alerts route to them with typed
parameters (hostile labels do not), and their diagnoses, run through the dispatcher as alert
runs against the simulated cluster and a real Prometheus, name what is wrong and why."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from bot.alerts.payload import AlertItem
from bot.alerts.routing import Route, alert_context, route
from bot.commands import Command
from bot.config import Settings, load_settings, settings_from_mapping
from bot.invocation import Invocation
from bot.markup import plain
from bot.registry import Registry
from bot.runbooks.loader import Catalog, load_catalog
from bot.services import Services
from bot.trigger import Trigger
from simcluster import SimCluster
from tests.conftest import DEMO_CONFIG, RecordingReporter
from tests.support.platform_exporter import (
    PlatformExporter,
    PlatformPrometheus,
    running_platform_prometheus,
)

NS = "shop-staging"
GIB = 2**30


# Fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def platform_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformPrometheus]:
    yield from running_platform_prometheus(tmp_path_factory.mktemp("platform-prometheus"))


@pytest.fixture
def exporter(platform_prometheus: PlatformPrometheus) -> PlatformExporter:
    return platform_prometheus.platform


@pytest.fixture
def catalog(registry: Registry) -> Catalog:
    return load_catalog([], registry)


@pytest.fixture
def prom_settings(kubeconfig: Path, db_url: str,
                  platform_prometheus: PlatformPrometheus) -> Settings:
    return load_settings(DEMO_CONFIG, environ={
        "KUBECONFIG": str(kubeconfig), "OPSBOT_DATABASE_URL": db_url,
        "PROMETHEUS_URL": platform_prometheus.url})


@pytest.fixture
def prom_services(prom_settings: Settings, registry: Registry) -> Iterator[Services]:
    built = Services.build(prom_settings, registry=registry)
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def kube(sim: SimCluster, kubeconfig: Path) -> Iterator[client.ApiClient]:
    from kubernetes import config

    api = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        yield api
    finally:
        api.close()


def alert(labels: dict[str, str], *, minutes_ago: float = 10, **annotations: str) -> AlertItem:
    starts = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    return AlertItem.model_validate({
        "status": "firing", "labels": labels, "annotations": annotations,
        "startsAt": starts.isoformat(), "generatorURL": "http://prometheus.example.com/graph?g0",
        "fingerprint": f"{abs(hash(tuple(sorted(labels.items())))):016x}"[:16],
    })


def routed(item: AlertItem, catalog: Catalog, settings: Settings, runbook: str) -> Route:
    found = [r for r in route(item, catalog, settings) if r.runbook.name == runbook]
    assert len(found) == 1, [r.runbook.name for r in route(item, catalog, settings)]
    return found[0]


async def run_alert(services: Services, item: AlertItem, runbook: str,
                    **overrides: Any) -> RecordingReporter:
    """Start the runbook as the alert processor does: routed params, the alert as context."""
    matched = routed(item, services.catalog, services.settings, runbook)
    assert matched.params is not None and matched.environment is not None, matched.problem
    params = {**matched.params, **overrides}
    text = f"run {runbook} --env {matched.environment.name}"
    inv = Invocation(
        trigger=Trigger(source="alert", actor="alertmanager", text=text, via="alert"),
        command=Command(text=text, meta="run", runbook=matched.runbook,
                        env=matched.environment.name),
        runbook=matched.runbook, environment=matched.environment, app=matched.app,
        params=params, context={"alert": alert_context(item, services.settings)},
    )
    reporter = RecordingReporter()
    outcome = await services.dispatcher.run_automatic(inv, reporter)
    assert outcome.execution_id, outcome
    return reporter


async def run_by_hand(services: Services, text: str, user: str = "bob") -> RecordingReporter:
    reporter = RecordingReporter()
    trigger = Trigger(source="console", actor=services.settings.user_id(user), text=text)
    await services.dispatcher.dispatch(trigger, reporter)
    return reporter


def finding(reporter: RecordingReporter) -> tuple[str, dict[str, str]]:
    step = reporter.final.steps[0]
    return step.summary, dict(step.fields)


def buttons(reporter: RecordingReporter) -> dict[str, str]:
    return {b.label: b.command for b in reporter.final.buttons}


HOSTILE = ["{{ 7*7 }}", "data\n", "Data_Volume", "a" * 300]


# Routing --------------------------------------------------------------------------------------

KUBELET = {"job": "kubelet", "metrics_path": "/metrics", "service": "kps-kubelet",
           "endpoint": "https-metrics", "instance": "10.0.0.11:10250", "node": "sim-node-1",
           "prometheus": "monitoring/kps-prometheus"}
KSM = {"job": "kube-state-metrics", "service": "kps-kube-state-metrics", "endpoint": "http",
       "instance": "10.244.1.7:8080", "container": "kube-state-metrics",
       "pod": "kps-kube-state-metrics-6d8f7b9c5-x7q2p", "prometheus": "monitoring/kps-prometheus"}

CASES = [
    ("alert-pvc-filling", {"alertname": "KubePersistentVolumeFillingUp", "namespace": NS,
                           "persistentvolumeclaim": "data-shop-db-0", "severity": "critical",
                           **KUBELET}, "persistentvolumeclaim",
     {"pvc": "data-shop-db-0", "window": "6h"}),
    ("alert-job-failed", {"alertname": "KubeJobFailed", "namespace": NS,
                          "job_name": "db-migrate-28950120", "severity": "warning", **KSM},
     "job_name", {"job_name": "db-migrate-28950120"}),
    ("alert-target-down", {"alertname": "TargetDown", "namespace": NS, "job": "shop-api",
                           "service": "shop-api", "severity": "warning"},
     "service", {"scrape_job": "shop-api", "service": "shop-api", "app": "shop-api"}),
    ("alert-certificate", {"alertname": "CertManagerCertExpirySoon", "namespace": NS,
                           "name": "shop-tls", "issuer_name": "letsencrypt",
                           "issuer_kind": "ClusterIssuer", "issuer_group": "cert-manager.io",
                           "severity": "warning", "job": "cert-manager"},
     "name", {"certificate": "shop-tls"}),
    ("alert-ingress-5xx", {"alertname": "NginxIngressHigh5xxRate", "namespace": NS,
                           "ingress": "shop", "severity": "critical"},
     "ingress", {"ingress": "shop", "window": "5m"}),
]


@pytest.mark.parametrize(("runbook", "labels", "_key", "params"), CASES,
                         ids=[c[0] for c in CASES])
def test_alert_routes_with_typed_params(runbook: str, labels: dict[str, str], _key: str,
                                        params: dict[str, Any], catalog: Catalog,
                                        offline_settings: Settings) -> None:
    matched = routed(alert(labels), catalog, offline_settings, runbook)
    assert matched.problem is None
    assert matched.params == params
    assert matched.environment is not None and matched.environment.name == "staging"
    assert matched.mode == "active" and not matched.runbook.mutating


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize(("runbook", "labels", "key", "_params"), CASES,
                         ids=[c[0] for c in CASES])
def test_hostile_label_routes_with_a_problem(runbook: str, labels: dict[str, str], key: str,
                                             _params: dict[str, Any], value: str,
                                             catalog: Catalog,
                                             offline_settings: Settings) -> None:
    bad = {**labels, key: value}
    matched = routed(alert(bad), catalog, offline_settings, runbook)
    assert matched.params is None and matched.problem


def test_ingress_alert_name_variant_and_other_namespaces(catalog: Catalog,
                                                         offline_settings: Settings) -> None:
    labels = {"alertname": "IngressHigh5xxRate", "namespace": NS, "ingress": "shop"}
    assert routed(alert(labels), catalog, offline_settings, "alert-ingress-5xx").params
    outside = routed(alert({**labels, "namespace": "ingress-nginx"}), catalog,
                     offline_settings, "alert-ingress-5xx")
    assert outside.params is None and "not a configured environment" in (outside.problem or "")


def test_target_down_hostile_job_label(catalog: Catalog, offline_settings: Settings) -> None:
    labels = {"alertname": "TargetDown", "namespace": NS, "service": "shop-api"}
    for value in ('{{ 7*7 }}', 'a"b', "shop\n"):
        matched = routed(alert({**labels, "job": value}), catalog, offline_settings,
                         "alert-target-down")
        assert matched.params is None and matched.problem


def _with_platform_env(path: Path) -> Settings:
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["environments"]["platform"] = {"namespace": "velero"}
    return settings_from_mapping(raw, environ={"OPSBOT_DATABASE_URL": f"sqlite:///{path}"})


def test_velero_alert_routes_through_an_environment_for_its_namespace(
    catalog: Catalog, offline_settings: Settings, tmp_path: Path
) -> None:
    labels = {"alertname": "VeleroBackupPartialFailures", "schedule": "shop-daily",
              "namespace": "velero", "job": "velero", "pod": "velero-7c9d8b6f5-2k4hx",
              "severity": "warning"}
    demo = routed(alert(labels), catalog, offline_settings, "alert-velero-backup")
    assert demo.params is None and "`velero` is not a configured environment" in plain(
        demo.problem or "")
    settings = _with_platform_env(tmp_path / "x.db")
    matched = routed(alert(labels), catalog, settings, "alert-velero-backup")
    assert matched.params == {"schedule": "shop-daily", "velero_namespace": "velero"}
    hostile = routed(alert({**labels, "schedule": "{{ 7*7 }}"}), catalog, settings,
                     "alert-velero-backup")
    assert hostile.params is None and hostile.problem


# PVC filling ----------------------------------------------------------------------------------

PVC_ALERT = CASES[0][1]


def _claim(core: client.CoreV1Api, storage: client.StorageV1Api, name: str, cls: str,
           expandable: bool) -> None:
    storage.create_storage_class({"metadata": {"name": cls}, "provisioner": "ebs.csi.aws.com",
                                  "allowVolumeExpansion": expandable})
    core.create_namespaced_persistent_volume_claim(NS, {
        "metadata": {"name": name},
        "spec": {"storageClassName": cls, "accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "10Gi"}}}})


def _mount(apps: client.AppsV1Api, deployment: str, claim: str) -> None:
    apps.patch_namespaced_deployment(deployment, NS, {"spec": {"template": {"spec": {
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]}}}})


async def test_pvc_filling_diagnosis(sim: SimCluster, kube: client.ApiClient,
                                     prom_services: Services, exporter: PlatformExporter,
                                     platform_prometheus: PlatformPrometheus) -> None:
    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
    _claim(core, client.StorageV1Api(kube), "data-shop-db-0", "gp3", expandable=True)
    _mount(apps, "shop-web", "data-shop-db-0")
    sim.wait_idle()
    exporter.set_volume(NS, "data-shop-db-0", capacity=10 * GIB, used=9 * GIB, growth=2**20)
    platform_prometheus.wait_for(
        'count_over_time(kubelet_volume_stats_used_bytes{persistentvolumeclaim="data-shop-db-0"}'
        "[10s])", lambda v: v >= 5)

    reporter = await run_alert(prom_services, alert(PVC_ALERT), "alert-pvc-filling",
                               window="10s")
    summary, fields = finding(reporter)
    assert reporter.final.status == "succeeded"
    assert summary.startswith("PVC data-shop-db-0 in shop-staging is 9")
    assert "% full (9." in summary and "of 10.0 GiB)" in summary
    assert fields["Likely cause"].startswith("steady growth of ")
    assert "full in about" in fields["Likely cause"]
    assert fields["Storage class"] == "gp3 (allowVolumeExpansion: true)"
    assert fields["Requested"] == "10Gi (bound capacity 10Gi)"
    assert "(Deployment/shop-web)" in fields["Mounted by"]
    assert "kubectl -n shop-staging patch pvc data-shop-db-0" in fields["Suggestion"]
    assert fields["Prometheus graph"] == "http://prometheus.example.com/graph?g0"
    assert "min ago" in fields["Since"]
    assert buttons(reporter) == {"Diagnose app": "diag shop-web --env staging"}


async def test_pvc_not_growing_on_a_fixed_class_by_hand(
    sim: SimCluster, kube: client.ApiClient, prom_services: Services,
    exporter: PlatformExporter, platform_prometheus: PlatformPrometheus
) -> None:
    core = client.CoreV1Api(kube)
    _claim(core, client.StorageV1Api(kube), "archive", "fixed", expandable=False)
    sim.wait_idle()
    exporter.set_volume(NS, "archive", capacity=10 * GIB, used=9.9 * GIB)
    platform_prometheus.wait_for(
        'count_over_time(kubelet_volume_stats_used_bytes{persistentvolumeclaim="archive"}[10s])',
        lambda v: v >= 5)
    reporter = await run_by_hand(prom_services,
                                 "run alert-pvc-filling pvc=archive window=10s --env staging")
    summary, fields = finding(reporter)
    assert summary.startswith("PVC archive in shop-staging is 99% full (9.9 GiB of 10.0 GiB)")
    assert fields["Likely cause"] == "the volume is full: writes will fail (or already do)"
    assert fields["Suggestion"].startswith("storage class fixed does not allow expansion")
    assert fields["Mounted by"] == "no pod" and "Prometheus graph" not in fields
    assert buttons(reporter) == {}  # no configured app mounts it


async def test_pvc_missing_claim_fails_the_diagnosis(services: Services) -> None:
    reporter = await run_by_hand(services, "run alert-pvc-filling pvc=nope --env staging")
    assert reporter.final.status == "failed"
    assert reporter.final.steps[0].summary.startswith("PVC nope does not exist in shop-staging")


# Job failed -----------------------------------------------------------------------------------

MIGRATE_LOG = ("INFO migrate: applying 0042_orders_index\n"
               'ERROR migrate: relation "orders_v2" does not exist\n')


async def test_job_failed_diagnosis(sim: SimCluster, kube: client.ApiClient,
                                    services: Services) -> None:
    batch = client.BatchV1Api(kube)
    cron = batch.create_namespaced_cron_job(NS, {
        "metadata": {"name": "db-migrate"},
        "spec": {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "migrate", "image": "registry.example.com/shop/api:1.4.0"}],
        }}}}}})
    sim.script_crashloop(NS, "db-migrate-28950120", "migrate", reason="Error", exit_code=1,
                         log=MIGRATE_LOG)
    batch.create_namespaced_job(NS, {
        "metadata": {"name": "db-migrate-28950120", "ownerReferences": [{
            "apiVersion": "batch/v1", "kind": "CronJob", "name": "db-migrate",
            "uid": cron.metadata.uid, "controller": True}]},
        "spec": {"backoffLimit": 2, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "migrate", "image": "registry.example.com/shop/api:1.4.0"}],
        }}}})
    sim.wait_idle()
    reporter = await run_alert(services, alert(CASES[1][1]), "alert-job-failed")
    summary, fields = finding(reporter)
    assert summary.startswith(
        "Job db-migrate-28950120 in shop-staging failed (BackoffLimitExceeded)")
    assert fields["Likely cause"] == (
        'all 3 attempts exited with code 1 (Error); last log line: ERROR migrate: relation '
        '"orders_v2" does not exist; backoffLimit 2 reached')
    assert fields["Pods"] == "3 failed, 0 succeeded, 0 active (backoffLimit 2, completions 1)"
    assert fields["Conditions"].startswith("FailureTarget: BackoffLimitExceeded")
    assert fields["CronJob"] == "db-migrate"
    assert "--from=cronjob/db-migrate" in fields["Re-run"]
    assert fields["Last failure"].endswith("/migrate: Error, exit code 1")
    output = reporter.final.steps[0].output or ""
    assert output.count("LOG db-migrate-28950120-") == 3
    assert buttons(reporter) == {}


async def test_job_deadline_exceeded_by_hand(sim: SimCluster, kube: client.ApiClient,
                                             services: Services) -> None:
    sim.script_crashloop(NS, "report", "report", restarts=0)  # OnFailure: stuck in a loop
    client.BatchV1Api(kube).create_namespaced_job(NS, {
        "metadata": {"name": "report"},
        "spec": {"activeDeadlineSeconds": 600, "template": {"spec": {
            "restartPolicy": "OnFailure",
            "containers": [{"name": "report", "image": "registry.example.com/shop/api:1.4.0"}],
        }}}})
    sim.wait_idle()
    sim.advance(601)
    sim.wait_idle()
    reporter = await run_by_hand(services, "run alert-job-failed job_name=report --env staging")
    summary, fields = finding(reporter)
    assert summary == ("Job report in shop-staging failed (DeadlineExceeded); likely cause: it "
                       "ran longer than activeDeadlineSeconds (600 s) and was stopped")
    assert fields["Deadline"] == "activeDeadlineSeconds 600"


# Target down ----------------------------------------------------------------------------------


def _pods(core: client.CoreV1Api, app: str) -> list[tuple[str, str]]:
    pods = core.list_namespaced_pod(NS, label_selector=f"app={app}").items
    return sorted((p.metadata.name, p.status.pod_ip) for p in pods)


async def test_target_down_while_pods_are_ready(
    sim: SimCluster, kube: client.ApiClient, prom_services: Services,
    exporter: PlatformExporter, platform_prometheus: PlatformPrometheus
) -> None:
    pods = _pods(client.CoreV1Api(kube), "shop-api")
    for _name, ip in pods:
        exporter.add_target("shop-api", NS, f"{ip}:8080", service="shop-api")
    first = pods[0]
    platform_prometheus.wait_for('sum(up{job="shop-api"})', lambda v: v == 3)
    exporter.set_up(f"{first[1]}:8080", False)
    platform_prometheus.wait_for('sum(up{job="shop-api"})', lambda v: v == 2)

    reporter = await run_alert(prom_services, alert(CASES[2][1]), "alert-target-down")
    summary, fields = finding(reporter)
    assert summary.startswith("1 of 3 targets of job shop-api in shop-staging are down")
    assert fields["Likely cause"] == (
        "the pods are ready but the scrape fails: server returned HTTP status 503 Service "
        "Unavailable; check the metrics port and path, a NetworkPolicy, or TLS/auth on the "
        "endpoint")
    down = fields["Down targets"]
    assert down.startswith(f"{first[1]}:8080 (pod {first[0]}), last up ")
    assert fields["Service"] == "shop-api: 3 ready endpoints, 0 not ready (selector app=shop-api)"
    assert fields["Pods"] == "3/3 ready (Deployment/shop-api)"
    assert buttons(reporter) == {"Diagnose app": "diag shop-api --env staging"}


async def test_target_down_without_ready_endpoints(
    sim: SimCluster, kube: client.ApiClient, prom_services: Services,
    exporter: PlatformExporter, platform_prometheus: PlatformPrometheus
) -> None:
    core = client.CoreV1Api(kube)
    core.create_namespaced_service(NS, {"metadata": {"name": "shop-worker"}, "spec": {
        "selector": {"app": "shop-worker"}, "ports": [{"name": "metrics", "port": 9090}]}})
    sim.wait_idle()
    [(name, ip)] = _pods(core, "shop-worker")
    exporter.add_target("shop-worker", NS, f"{ip}:9090", service="shop-worker", pod=name,
                        up=False)
    platform_prometheus.wait_for('count(up{job="shop-worker"} == 0)', lambda v: v == 1)
    labels = {"alertname": "TargetDown", "namespace": NS, "job": "shop-worker",
              "service": "shop-worker", "severity": "warning"}
    reporter = await run_alert(prom_services, alert(labels), "alert-target-down")
    summary, fields = finding(reporter)
    assert summary.startswith("1 of 1 targets of job shop-worker in shop-staging are down")
    assert fields["Likely cause"] == ("no ready endpoints: 1 pods behind the Service, 0 ready; "
                                      "the pods are down, not the scrape")
    assert fields["Down targets"] == (f"{ip}:9090 (pod {name}), not up in the last 1h: server "
                                      "returned HTTP status 503 Service Unavailable")
    assert buttons(reporter) == {"Diagnose app": "diag shop-worker --env staging"}


# Certificates ---------------------------------------------------------------------------------


def _stamp(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cert_world(custom: client.CustomObjectsApi, *, issuer_ready: bool, cert_status: dict[str, Any],
                request: dict[str, Any] | None = None,
                challenge: dict[str, Any] | None = None) -> None:
    g, v = "cert-manager.io", "v1"
    custom.create_cluster_custom_object(g, v, "clusterissuers", {
        "apiVersion": f"{g}/{v}", "kind": "ClusterIssuer", "metadata": {"name": "letsencrypt"},
        "spec": {"acme": {"server": "https://acme-v02.api.letsencrypt.org/directory"}}})
    issuer_status = ({"type": "Ready", "status": "True", "reason": "ACMEAccountRegistered",
                      "message": "The ACME account was registered with the ACME server"}
                     if issuer_ready else
                     {"type": "Ready", "status": "False", "reason": "ErrRegisterACMEAccount",
                      "message": "Failed to register ACME account: 429 urn:ietf:params:acme:"
                                 "error:rateLimited"})
    custom.patch_cluster_custom_object_status(g, v, "clusterissuers", "letsencrypt",
                                              {"status": {"conditions": [issuer_status]}})
    custom.create_namespaced_custom_object(g, v, NS, "certificates", {
        "apiVersion": f"{g}/{v}", "kind": "Certificate", "metadata": {"name": "shop-tls"},
        "spec": {"secretName": "shop-tls", "dnsNames": ["shop.example.com"],
                 "issuerRef": {"name": "letsencrypt", "kind": "ClusterIssuer",
                               "group": "cert-manager.io"}}})
    custom.patch_namespaced_custom_object_status(g, v, NS, "certificates", "shop-tls",
                                                 {"status": cert_status})
    if request is None:
        return
    created = custom.create_namespaced_custom_object(g, v, NS, "certificaterequests", {
        "apiVersion": f"{g}/{v}", "kind": "CertificateRequest",
        "metadata": {"name": "shop-tls-1", "annotations": {
            "cert-manager.io/certificate-name": "shop-tls",
            "cert-manager.io/certificate-revision": "1"}},
        "spec": {"issuerRef": {"name": "letsencrypt", "kind": "ClusterIssuer"}}})
    custom.patch_namespaced_custom_object_status(g, v, NS, "certificaterequests", "shop-tls-1",
                                                 {"status": request})
    if challenge is None:
        return
    order = custom.create_namespaced_custom_object("acme.cert-manager.io", "v1", NS, "orders", {
        "apiVersion": "acme.cert-manager.io/v1", "kind": "Order",
        "metadata": {"name": "shop-tls-1-3301234567", "ownerReferences": [{
            "apiVersion": f"{g}/{v}", "kind": "CertificateRequest", "name": "shop-tls-1",
            "uid": created["metadata"]["uid"], "controller": True}]},
        "spec": {"request": "LS0t", "dnsNames": ["shop.example.com"]}})
    custom.create_namespaced_custom_object("acme.cert-manager.io", "v1", NS, "challenges", {
        "apiVersion": "acme.cert-manager.io/v1", "kind": "Challenge",
        "metadata": {"name": "shop-tls-1-3301234567-1702345678", "ownerReferences": [{
            "apiVersion": "acme.cert-manager.io/v1", "kind": "Order",
            "name": order["metadata"]["name"], "uid": order["metadata"]["uid"],
            "controller": True}]},
        "spec": {"type": "HTTP-01", "dnsName": "shop.example.com", "token": "t"}})
    custom.patch_namespaced_custom_object_status(
        "acme.cert-manager.io", "v1", NS, "challenges", "shop-tls-1-3301234567-1702345678",
        {"status": challenge})


NOT_READY = {"conditions": [{"type": "Ready", "status": "False", "reason": "Issuing",
                             "message": "Issuing certificate as Secret does not exist"},
                            {"type": "Issuing", "status": "True", "reason": "DoesNotExist"}]}
PENDING_REQUEST = {"conditions": [
    {"type": "Approved", "status": "True", "reason": "cert-manager.io"},
    {"type": "Ready", "status": "False", "reason": "Pending",
     "message": "Waiting on certificate issuance from order shop-tls-1-3301234567"}]}
FAILING_CHALLENGE = {"state": "pending", "processing": True, "presented": True,
                     "reason": "Waiting for HTTP-01 challenge propagation: wrong status code "
                               "'404', expected '200'"}


@pytest.mark.parametrize(("world", "what", "cause"), [
    ({"issuer_ready": False, "cert_status": NOT_READY},
     "Certificate shop-tls in shop-staging is not Ready (Issuing)",
     "the issuer is not ready: ClusterIssuer letsencrypt (ErrRegisterACMEAccount: Failed to "
     "register ACME account: 429 urn:ietf:params:acme:error:rateLimited)"),
    ({"issuer_ready": True, "cert_status": NOT_READY, "request": PENDING_REQUEST,
      "challenge": FAILING_CHALLENGE},
     "Certificate shop-tls in shop-staging is not Ready (Issuing)",
     "an ACME challenge is failing: HTTP-01 for shop.example.com: pending, Waiting for HTTP-01 "
     "challenge propagation: wrong status code '404', expected '200'"),
], ids=["issuer-not-ready", "challenge-failing"])
async def test_certificate_not_ready(world: dict[str, Any], what: str, cause: str,
                                     kube: client.ApiClient, services: Services) -> None:
    _cert_world(client.CustomObjectsApi(kube), **world)
    labels = {**CASES[3][1], "alertname": "CertManagerCertNotReady"}
    reporter = await run_alert(services, alert(labels), "alert-certificate")
    summary, fields = finding(reporter)
    assert summary == f"{what}; likely cause: {cause}"
    assert fields["Ready"].startswith("False (Issuing)")


async def test_certificate_renewal_not_attempted(kube: client.ApiClient,
                                                 services: Services) -> None:
    ready = {"conditions": [{"type": "Ready", "status": "True", "reason": "Ready",
                             "message": "Certificate is up to date and has not expired"}],
             "notBefore": _stamp(timedelta(days=-85)), "notAfter": _stamp(timedelta(days=5)),
             "renewalTime": _stamp(timedelta(days=-25)), "revision": 1}
    _cert_world(client.CustomObjectsApi(kube), issuer_ready=True, cert_status=ready)
    reporter = await run_alert(services, alert(CASES[3][1]), "alert-certificate")
    summary, fields = finding(reporter)
    assert summary.startswith("Certificate shop-tls in shop-staging expires in 5 d")
    assert fields["Likely cause"].startswith("renewal was not attempted: renewalTime ")
    assert fields["Likely cause"].endswith(
        "passed and no CertificateRequest since (is cert-manager running?)")
    assert fields["Renewal time"].endswith("(passed)")
    assert fields["Request"] == "none"


# Ingress 5xx ----------------------------------------------------------------------------------


def _ingress(kube: client.ApiClient, name: str, routes: dict[str, str]) -> None:
    client.NetworkingV1Api(kube).create_namespaced_ingress(NS, {
        "metadata": {"name": name},
        "spec": {"ingressClassName": "nginx", "rules": [{"host": "shop.example.com", "http": {
            "paths": [{"path": path, "pathType": "Prefix", "backend": {
                "service": {"name": service, "port": {"number": 80}}}}
                for path, service in routes.items()]}}]}})


def _settled(platform_prometheus: PlatformPrometheus, ingress: str) -> None:
    """Wait until a [5s] rate window holds enough scrapes of the Ingress's counters."""
    platform_prometheus.wait_for(
        f'count_over_time(nginx_ingress_controller_requests{{ingress="{ingress}",'
        f'status="200"}}[5s])', lambda v: v >= 4)


async def test_ingress_5xx_from_a_backend_without_recent_change(
    sim: SimCluster, kube: client.ApiClient, prom_services: Services,
    exporter: PlatformExporter, platform_prometheus: PlatformPrometheus
) -> None:
    _ingress(kube, "shop", {"/api": "shop-api", "/": "shop-web"})
    exporter.set_ingress(NS, "shop", "shop-api", rps=100, error_ratio=0.3, error_status="502")
    exporter.set_ingress(NS, "shop", "shop-web", rps=50)
    _settled(platform_prometheus, "shop")
    reporter = await run_alert(prom_services, alert(CASES[4][1]), "alert-ingress-5xx",
                               window="5s")
    summary, fields = finding(reporter)
    assert summary.startswith("Ingress shop in shop-staging: 2")
    assert "% of requests answer 5xx over 5s" in summary
    assert fields["Likely cause"] == (
        "backend shop-api (app shop-api) answers the errors: the backend closed connections "
        "or crashed (502 Bad Gateway); no change to shop-api in the last 2 h")
    assert fields["By service"].startswith("shop-api: 3")
    assert fields["Status codes"].startswith("502 ")
    assert fields["Backends"] == ("shop.example.com/api -> shop-api:80 (3 ready endpoints, app "
                                  "shop-api); shop.example.com/ -> shop-web:80 (2 ready "
                                  "endpoints, app shop-web)")
    assert fields["Last change"].startswith("shop-api: revision 3 "
                                            "(registry.example.com/shop/api:1.4.0)")
    assert buttons(reporter) == {"Diagnose app": "diag shop-api --env staging"}


async def test_ingress_5xx_after_a_recent_deploy_offers_rollback(
    sim: SimCluster, kube: client.ApiClient, prom_services: Services,
    exporter: PlatformExporter, platform_prometheus: PlatformPrometheus
) -> None:
    _ingress(kube, "store", {"/api": "shop-api"})
    client.AppsV1Api(kube).patch_namespaced_deployment("shop-api", NS, {"spec": {"template": {
        "spec": {"containers": [{"name": "api",
                                 "image": "registry.example.com/shop/api:1.5.0"}]}}}})
    sim.wait_idle()
    exporter.set_ingress(NS, "store", "shop-api", rps=100, error_ratio=0.5, error_status="500")
    _settled(platform_prometheus, "store")
    labels = {**CASES[4][1], "ingress": "store"}
    reporter = await run_alert(prom_services, alert(labels, minutes_ago=1), "alert-ingress-5xx",
                               window="5s")
    _, fields = finding(reporter)
    assert fields["Likely cause"].startswith(
        "backend shop-api (app shop-api) started failing after a recent change: revision 4 "
        "(registry.example.com/shop/api:1.5.0)")
    assert buttons(reporter) == {"Diagnose app": "diag shop-api --env staging",
                                 "Rollback": "rollback shop-api --env staging"}


async def test_ingress_5xx_with_no_ready_backend(
    sim: SimCluster, kube: client.ApiClient, prom_services: Services,
    exporter: PlatformExporter, platform_prometheus: PlatformPrometheus
) -> None:
    _ingress(kube, "web", {"/": "shop-web"})
    client.AppsV1Api(kube).patch_namespaced_deployment_scale("shop-web", NS,
                                                             {"spec": {"replicas": 0}})
    sim.wait_idle()
    exporter.set_ingress(NS, "web", "shop-web", rps=20, error_ratio=1.0, error_status="503")
    platform_prometheus.wait_for(
        'count_over_time(nginx_ingress_controller_requests{ingress="web",status="503"}[5s])',
        lambda v: v >= 4)
    reporter = await run_by_hand(prom_services,
                                 "run alert-ingress-5xx ingress=web window=5s --env staging")
    summary, fields = finding(reporter)
    assert summary.startswith("Ingress web in shop-staging: 100.0% of requests answer 5xx")
    assert fields["Likely cause"] == ("backend shop-web has no ready endpoints, so nginx found "
                                      "no ready backend (503 Service Unavailable)")


# Velero ---------------------------------------------------------------------------------------


def _velero(custom: client.CustomObjectsApi, location: dict[str, Any],
            phases: list[dict[str, Any]]) -> None:
    g, v, ns = "velero.io", "v1", "velero"
    custom.create_namespaced_custom_object(g, v, ns, "schedules", {
        "apiVersion": f"{g}/{v}", "kind": "Schedule", "metadata": {"name": "shop-daily"},
        "spec": {"schedule": "0 2 * * *", "template": {"includedNamespaces": [NS]}},
        "status": {"phase": "Enabled", "lastBackup": _stamp(timedelta(hours=-3))}})
    # The demo seed has a healthy `default` location; this test's replaces it.
    custom.delete_namespaced_custom_object(g, v, ns, "backupstoragelocations", "default")
    custom.create_namespaced_custom_object(g, v, ns, "backupstoragelocations", {
        "apiVersion": f"{g}/{v}", "kind": "BackupStorageLocation",
        "metadata": {"name": "default"},
        "spec": {"provider": "aws", "objectStorage": {"bucket": "shop-backups"}},
        "status": location})
    for days, status in enumerate(phases):
        name = f"shop-daily-2026112{5 + days}020000"
        custom.create_namespaced_custom_object(g, v, ns, "backups", {
            "apiVersion": f"{g}/{v}", "kind": "Backup",
            "metadata": {"name": name, "labels": {"velero.io/schedule-name": "shop-daily",
                                                  "velero.io/storage-location": "default"}},
            "spec": {"includedNamespaces": [NS], "storageLocation": "default",
                     "ttl": "720h0m0s"},
            "status": {"startTimestamp": _stamp(timedelta(days=days - 2)),
                       "completionTimestamp": _stamp(timedelta(days=days - 2, minutes=4)),
                       **status}})


async def test_velero_backup_failed_on_unavailable_storage(
    kube: client.ApiClient, services: Services
) -> None:
    _velero(client.CustomObjectsApi(kube),
            {"phase": "Unavailable", "message": "BackupStorageLocation \"default\" is "
             "unavailable: rpc error: code = Unknown desc = NoSuchBucket"},
            [{"phase": "Completed", "errors": 0, "warnings": 1},
             {"phase": "Failed", "failureReason": "error checking if backup already exists in "
              "object storage: NoSuchBucket"}])
    reporter = await run_by_hand(services,
                                 "run alert-velero-backup schedule=shop-daily --env staging")
    summary, fields = finding(reporter)
    assert summary.startswith(
        "Velero backup shop-daily-20261126020000 of schedule shop-daily: Failed; likely cause: "
        "the backup storage location is unavailable: default: Unavailable")
    assert fields["Recent backups"] == "1 of the last 2 failed or partly failed"
    assert fields["Retry"].startswith("retry after fixing the cause: velero backup create "
                                      "--from-schedule shop-daily -n velero")
    # The schedule backs up shop-staging, the staging environment's namespace.
    assert [(b.label, b.command) for b in reporter.final.buttons] == [
        ("Retry backup", "backup create shop-staging --env staging")]


async def test_velero_partial_failure_through_a_platform_environment(
    kube: client.ApiClient, services: Services, tmp_path: Path
) -> None:
    _velero(client.CustomObjectsApi(kube), {"phase": "Available"},
            [{"phase": "PartiallyFailed", "errors": 3, "warnings": 2,
              "progress": {"totalItems": 120, "itemsBackedUp": 117}}])
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["environments"]["platform"] = {"namespace": "velero"}
    settings = settings_from_mapping(raw, environ={
        "KUBECONFIG": services.settings.kubeconfig or "",
        "OPSBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'platform.db'}"})
    platform = Services.build(settings, registry=services.registry)
    try:
        labels = {"alertname": "VeleroBackupPartialFailures", "schedule": "shop-daily",
                  "namespace": "velero", "job": "velero", "severity": "warning"}
        reporter = await run_alert(platform, alert(labels), "alert-velero-backup")
    finally:
        platform.close()
    summary, fields = finding(reporter)
    assert summary.startswith("Velero backup shop-daily-20261125020000 of schedule shop-daily: "
                              "PartiallyFailed; likely cause: 3 items could not be backed up "
                              "(2 warnings)")
    assert "117/120 items" in fields["Latest"]
    assert fields["Storage location"] == "default: Available"
