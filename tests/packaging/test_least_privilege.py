"""Least privilege, proven: the product's commands and alert runbooks run end to end against the
simulated cluster, which records every request the bot's Kubernetes client makes as RBAC sees it
(verb, API group, resource, subresource, namespace) where it routes them; the chart, rendered
with the real `helm`, must allow exactly those. A missing permission is a command that fails in
a real cluster; an extra one is a grant nobody uses."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

import handlers.backup as backup_module
from bot.config import load_settings
from bot.registry import Registry
from bot.services import Services
from bot.trigger import Trigger
from simcluster import SimCluster
from simcluster.access import Access
from simcluster.rest import DeleteOptions, ListQuery
from simcluster.routing import Route
from tests.conftest import DEMO_CONFIG, RecordingReporter
from tests.packaging.chart import NAMESPACE, RELEASE
from tests.packaging.tools import CHART, run

NS = "shop-staging"
VELERO = "velero"
Obj = dict[str, Any]

# The managed world: the demo's environments, one StatefulSet app and one Argo Rollouts app;
# shop-web's broken deploy gives up after a few seconds.
EXTRA_APPS: dict[str, Obj] = {
    "shop-web": {"deploy": {"timeout_seconds": 4}},
    "shop-db": {"kind": "StatefulSet", "container": "db", "image": "registry.example.com/shop/db",
                "replicas": {"min": 1, "max": 3}, "environments": ["staging"],
                "deploy": {"timeout_seconds": 20}},
    "shop-canary": {"kind": "Deployment", "container": "app",
                    "image": "registry.example.com/shop/canary",
                    "replicas": {"min": 1, "max": 10}, "environments": ["staging"],
                    "deploy": {"strategy": "argo-rollouts", "timeout_seconds": 20}},
}
# The chart values the Roles are rendered with: the same environments, backups on.
CHART_VALUES: Obj = {
    "config": {"default_environment": "staging",
               "environments": {"staging": {"namespace": "shop-staging"},
                                "prod": {"namespace": "shop-prod"}}},
    "rbac": {"backups": {"enabled": True}},
}

# What each user types, in order; bob is an SRE (every runbook), alice a deployer. Each line is
# a scenario the brief names: deploy, rollback, scale, restart, diag, backups, alert runbooks
# (by hand, as an alert's suggestion runs them), Argo Rollouts and StatefulSets.
SCENARIOS: list[tuple[str, str]] = [
    ("alice", "status shop-api"),
    ("alice", "history shop-api"),
    ("alice", "deploy shop-api 1.5.0"),
    ("alice", "rollback shop-api"),
    ("alice", "scale shop-api 4"),
    ("alice", "restart shop-web"),
    ("alice", "diag shop-worker"),
    # A deploy whose pods never become ready: the stuck pods are deleted after the rollback.
    ("alice", "deploy shop-web 9.9.9-broken"),
    ("alice", "status shop-db"),
    ("alice", "history shop-db"),
    ("alice", "deploy shop-db 16.5"),
    ("alice", "rollback shop-db"),
    ("alice", "scale shop-db 3"),
    ("alice", "restart shop-db"),
    ("alice", "status shop-canary"),
    ("alice", "deploy shop-canary 1.1.0"),
    ("alice", "promote shop-canary"),
    ("alice", "scale shop-canary 5"),
    ("alice", "deploy shop-canary 1.2.0"),
    ("alice", "abort shop-canary"),
    ("alice", "rollback shop-canary"),
    ("alice", "restart shop-canary"),
    ("alice", "backup create shop-api"),
    ("alice", "backup list"),
    ("alice", "backup describe nightly"),
    ("bob", 'backup schedule shop-api "0 3 * * *"'),
    ("bob", 'backup schedule shop-api "0 4 * * *"'),
    ("alice", "backup schedules"),
    ("bob", "backup pause shop-api-staging"),
    ("bob", "backup unpause shop-api-staging"),
    ("bob", "backup restore nightly"),  # refused: it would overwrite (after listing)
    ("bob", "backup restore nightly --into shop-staging-copy"),
    ("bob", "backup verify nightly"),
    ("bob", "run alert-crashloop app=shop-worker"),
    ("bob", "run alert-oom-killed app=shop-worker"),
    ("bob", "run alert-container-waiting app=shop-worker"),
    ("bob", "run alert-pod-not-ready app=shop-api"),
    ("bob", "run alert-deployment app=shop-api"),
    ("bob", "run alert-hpa-maxed-out app=shop-api hpa=shop-api"),
    ("bob", "run alert-cpu-throttling app=shop-api"),
    ("bob", "run alert-pvc-filling pvc=data-shop-web"),
    ("bob", "run alert-job-failed job_name=report-1"),
    ("bob", "run alert-target-down scrape_job=shop-api service=shop-api"),
    ("bob", "run alert-ingress-5xx ingress=shop"),
    ("bob", "run alert-certificate certificate=shop-tls"),
    ("bob", "run alert-velero-backup schedule=shop-api-staging"),
    ("bob", "run remediate-scale-throttled app=shop-web"),
    ("bob", "run remediate-crashloop-rollback app=shop-worker"),
    ("bob", "run alert-certificate certificate=api-tls"),
    ("bob", "run remediate-restart-stuck-pod app=shop-api pod={stuck_pod}"),
]


@dataclass(frozen=True)
class Grant:
    """One (verb, group, resource) a rendered Role or ClusterRole allows; namespace "" for a
    ClusterRole (everywhere)."""

    verb: str
    group: str
    resource: str
    namespace: str
    role: str

    def allows(self, access: Access) -> bool:
        return (access.verb, access.group, access.qualified_resource) == (
            self.verb, self.group, self.resource) and self.namespace in ("", access.namespace)


def grants(objects: list[Obj]) -> list[Grant]:
    found = []
    for role in objects:
        if role["kind"] not in ("Role", "ClusterRole"):
            continue
        namespace = role["metadata"].get("namespace", "") if role["kind"] == "Role" else ""
        for rule in role["rules"]:
            assert not rule.get("resourceNames"), "rules by name are not compared here"
            found += [Grant(verb, group, resource, namespace, role["metadata"]["name"])
                      for verb in rule["verbs"] for group in rule["apiGroups"]
                      for resource in rule["resources"]]
    return found


# -- the world ---------------------------------------------------------------------------------


def create(sim: SimCluster, group: str, version: str, plural: str, body: Obj,
           namespace: str | None = NS) -> Obj:
    """Written in-process, as an operator or controller would: not a request of the bot's."""
    made: Obj = sim.api.create(Route(group, version, plural, namespace), body)
    return made


def world(sim: SimCluster) -> None:
    """Objects the alert runbooks and the extra apps look at, none of them the bot's doing."""
    create(sim, "apps", "v1", "statefulsets", {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "shop-db", "labels": {"app": "shop-db"}},
        "spec": {"replicas": 2, "serviceName": "shop-db",
                 "selector": {"matchLabels": {"app": "shop-db"}},
                 "template": {"metadata": {"labels": {"app": "shop-db"}}, "spec": {"containers": [
                     {"name": "db", "image": "registry.example.com/shop/db:16.4"}]}}}})
    create(sim, "argoproj.io", "v1alpha1", "rollouts", {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "shop-canary", "labels": {"app": "shop-canary"}},
        "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "shop-canary"}},
                 "template": {"metadata": {"labels": {"app": "shop-canary"}}, "spec": {
                     "containers": [{"name": "app",
                                     "image": "registry.example.com/shop/canary:1.0.0"}]}},
                 "strategy": {"canary": {"steps": [{"setWeight": 25}, {"pause": {}}]}}}})
    sim.script_image_pull_error("9.9.9-broken")
    # alert-pvc-filling: a claim on an expandable class, mounted by shop-web.
    create(sim, "storage.k8s.io", "v1", "storageclasses", {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "gp3"},
        "provisioner": "ebs.csi.aws.com", "allowVolumeExpansion": True}, namespace=None)
    create(sim, "", "v1", "persistentvolumeclaims", {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data-shop-web"},
        "spec": {"storageClassName": "gp3", "accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "10Gi"}}}})
    # alert-job-failed: a failing Job.
    sim.script_crashloop(NS, "report-1", "report", reason="Error", exit_code=1,
                         log="report: cannot connect\n")
    create(sim, "batch", "v1", "jobs", {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "report-1"},
        "spec": {"backoffLimit": 1, "template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "report", "image": "registry.example.com/shop/api:1.4.0"}]}}}})
    # alert-ingress-5xx: an Ingress in front of shop-api.
    create(sim, "networking.k8s.io", "v1", "ingresses", {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "shop"},
        "spec": {"rules": [{"host": "shop.example.com", "http": {"paths": [
            {"path": "/", "pathType": "Prefix",
             "backend": {"service": {"name": "shop-api", "port": {"number": 80}}}}]}}]}})
    # alert-certificate: a Certificate stuck on an ACME challenge, issued by a ClusterIssuer.
    g, v = "cert-manager.io", "v1"
    create(sim, g, v, "clusterissuers", {
        "apiVersion": f"{g}/{v}", "kind": "ClusterIssuer", "metadata": {"name": "letsencrypt"},
        "spec": {"acme": {}}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}},
        namespace=None)
    create(sim, g, v, "certificates", {
        "apiVersion": f"{g}/{v}", "kind": "Certificate", "metadata": {"name": "shop-tls"},
        "spec": {"secretName": "shop-tls", "dnsNames": ["shop.example.com"],
                 "issuerRef": {"name": "letsencrypt", "kind": "ClusterIssuer"}},
        "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Issuing"}]}})
    request = create(sim, g, v, "certificaterequests", {
        "apiVersion": f"{g}/{v}", "kind": "CertificateRequest",
        "metadata": {"name": "shop-tls-1", "annotations": {
            "cert-manager.io/certificate-name": "shop-tls"}},
        "spec": {"issuerRef": {"name": "letsencrypt", "kind": "ClusterIssuer"}},
        "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Pending"}]}})
    order = create(sim, "acme.cert-manager.io", "v1", "orders", {
        "apiVersion": "acme.cert-manager.io/v1", "kind": "Order",
        "metadata": {"name": "shop-tls-1-1", "ownerReferences": [{
            "apiVersion": f"{g}/{v}", "kind": "CertificateRequest", "name": "shop-tls-1",
            "uid": request["metadata"]["uid"], "controller": True}]},
        "spec": {"dnsNames": ["shop.example.com"]}})
    create(sim, "acme.cert-manager.io", "v1", "challenges", {
        "apiVersion": "acme.cert-manager.io/v1", "kind": "Challenge",
        "metadata": {"name": "shop-tls-1-1-1", "ownerReferences": [{
            "apiVersion": "acme.cert-manager.io/v1", "kind": "Order", "name": "shop-tls-1-1",
            "uid": order["metadata"]["uid"], "controller": True}]},
        "spec": {"type": "HTTP-01", "dnsName": "shop.example.com"},
        "status": {"state": "pending", "reason": "wrong status code '404'"}})
    # ... and one from a namespaced Issuer.
    create(sim, g, v, "issuers", {
        "apiVersion": f"{g}/{v}", "kind": "Issuer", "metadata": {"name": "internal-ca"},
        "spec": {"ca": {"secretName": "ca"}},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    create(sim, g, v, "certificates", {
        "apiVersion": f"{g}/{v}", "kind": "Certificate", "metadata": {"name": "api-tls"},
        "spec": {"secretName": "api-tls", "dnsNames": ["api.shop.svc"],
                 "issuerRef": {"name": "internal-ca", "kind": "Issuer"}},
        "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Issuing"}]}})
    # backups: one the simulated Velero completes, contents recorded, to restore and verify.
    create(sim, "velero.io", "v1", "backups", {
        "apiVersion": "velero.io/v1", "kind": "Backup",
        "metadata": {"name": "nightly", "namespace": VELERO},
        "spec": {"includedNamespaces": [NS], "storageLocation": "default", "ttl": "720h0m0s",
                 "labelSelector": {"matchLabels": {"app": "shop-web"}}}}, namespace=VELERO)
    create(sim, "", "v1", "namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                         "metadata": {"name": NAMESPACE}}, namespace=None)
    sim.wait_idle()


def stuck_pod(sim: SimCluster) -> str:
    """A shop-api pod that never becomes ready while its two siblings are: one that
    remediate-restart-stuck-pod deletes."""
    def pods() -> list[Obj]:
        listed: Obj = sim.get(f"/api/v1/namespaces/{NS}/pods") or {}
        return [p for p in listed.get("items", [])
                if p["metadata"]["name"].startswith("shop-api-")
                and not p["metadata"].get("deletionTimestamp")]

    def ready(pod: Obj) -> bool:
        return any(c["type"] == "Ready" and c["status"] == "True"
                   for c in pod.get("status", {}).get("conditions", []))

    sim.clear_scripts()
    sim.script_never_ready(NS, "shop-api")
    sim.api.delete(Route("", "v1", "pods", NS, pods()[0]["metadata"]["name"]), DeleteOptions())
    sim.wait_idle()
    [stuck] = [p["metadata"]["name"] for p in pods() if not ready(p)]
    sim.clear_scripts()
    sim.script_never_ready(NS, stuck)  # its replacement becomes ready
    sim.wait_idle()
    return str(stuck)


RBAC_KINDS = {"ServiceAccount": ("", "v1", "serviceaccounts"),
              "Role": ("rbac.authorization.k8s.io", "v1", "roles"),
              "RoleBinding": ("rbac.authorization.k8s.io", "v1", "rolebindings"),
              "ClusterRole": ("rbac.authorization.k8s.io", "v1", "clusterroles"),
              "ClusterRoleBinding": ("rbac.authorization.k8s.io", "v1", "clusterrolebindings")}


@pytest.fixture
def chart(helm: str, tmp_path: Path) -> list[Obj]:
    """The chart rendered with the real helm for the scenarios' environments."""
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(CHART_VALUES))
    done = run([helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
                "--values", str(values)])
    assert done.returncode == 0, done.stderr
    return [o for o in yaml.safe_load_all(done.stdout) if o]


def install_rbac(sim: SimCluster, objects: list[Obj]) -> str:
    """The chart's ServiceAccount, Roles, ClusterRoles and bindings, made in the simulated
    cluster as helm would; the ServiceAccount's token."""
    account = ""
    for obj in objects:
        if obj["kind"] not in RBAC_KINDS:
            continue
        group, version, plural = RBAC_KINDS[obj["kind"]]
        cluster_wide = obj["kind"].startswith("Cluster")
        namespace = None if cluster_wide else obj["metadata"].get("namespace", NAMESPACE)
        create(sim, group, version, plural, obj, namespace=namespace)
        if obj["kind"] == "ServiceAccount":
            account = obj["metadata"]["name"]
    assert account, "the chart made no ServiceAccount"
    return sim.service_account_token(NAMESPACE, account)


@pytest.fixture
def services(sim: SimCluster, chart: list[Obj], tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[Services]:
    """opsbot as the chart runs it: with its ServiceAccount's token, under exactly its Roles."""
    monkeypatch.setattr(backup_module.common, "POLL_SECONDS", 0.05)
    world(sim)
    token = install_rbac(sim, chart)
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    for name, extra in EXTRA_APPS.items():
        raw["apps"].setdefault(name, {}).update(extra)
    # Staging's deploys read Trivy Operator's VulnerabilityReports (the deploy gate).
    raw["environments"]["staging"]["deploy"] = {"vulnerabilities": {"max_critical": 0}}
    config = tmp_path / "opsbot.yaml"
    config.write_text(yaml.safe_dump(raw))
    settings = load_settings(config, environ={
        "KUBECONFIG": sim.write_kubeconfig(tmp_path / "kubeconfig", token=token),
        "OPSBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'opsbot.db'}"})
    built = Services.build(settings, registry=Registry.builtin())
    built.dispatcher.progress_interval = 0.0
    try:
        yield built
    finally:
        built.close()


async def scenarios(sim: SimCluster, services: Services) -> dict[str, list[Access]]:
    """Every scenario run while the simulated cluster records; what each one asked for."""
    used: dict[str, list[Access]] = {}
    for user, text in SCENARIOS:
        if "{stuck_pod}" in text:
            text = text.format(stuck_pod=stuck_pod(sim))
        reporter = RecordingReporter()
        trigger = Trigger(source="console", actor=services.settings.user_id(user), text=text)
        with sim.recording() as seen:
            outcome = await services.dispatcher.dispatch(trigger, reporter)
        sim.wait_idle()
        summary = reporter.views[-1].summary if reporter.views else reporter.notices
        assert outcome.status in ("succeeded", "failed", "refused"), (text, outcome.status, summary)
        used[text] = list(seen)
    # Leader election (issue 11 item 5, written on another branch) reads, takes and renews a
    # Lease in the release namespace through the same client; until it lands here, the same
    # calls are made directly so that the Lease Role is held to the same proof.
    api = client.CoordinationV1Api(services.kube.for_context(None).api_client)
    lease = {"metadata": {"name": "opsbot-leader"},
             "spec": {"holderIdentity": "opsbot-0", "leaseDurationSeconds": 15}}
    with sim.recording() as seen:
        api.create_namespaced_lease(NAMESPACE, lease)
        current = api.read_namespaced_lease("opsbot-leader", NAMESPACE)
        current.spec.holder_identity = "opsbot-1"
        api.replace_namespaced_lease("opsbot-leader", NAMESPACE, current)
    used["leader election"] = list(seen)
    return used


async def test_the_roles_allow_exactly_what_the_bot_uses(
        sim: SimCluster, services: Services, chart: list[Obj]) -> None:
    """The scenarios run as the chart's ServiceAccount, so the simulated cluster's RBAC refuses
    whatever the Roles do not allow: nothing may be refused. Then the recorded requests are
    compared with the rules, so nothing is granted that no scenario used."""
    used = await scenarios(sim, services)
    assert not sim.authorizer.denied, "refused under the chart's Roles:\n" + "\n".join(
        f"  {attributes}" for _subject, attributes in sim.authorizer.denied)
    granted = grants(chart)

    everything = {a for accesses in used.values() for a in accesses}
    # Discovery (non-resource URLs) is granted to every authenticated user by the cluster's
    # own system:discovery role; the chart grants none.
    assert all(a.path.startswith(("/api", "/apis")) for a in everything if a.path)
    requests = {a for a in everything if not a.path}
    missing = {a for a in requests if not any(g.allows(a) for g in granted)}
    assert not missing, "the chart does not allow:\n" + "\n".join(
        f"  {a} (by {[t for t, acc in used.items() if a in acc]})" for a in sorted(missing))
    unused = {(g.role, g.namespace, g.verb, g.group, g.resource) for g in granted
              if not any(g.allows(a) for a in requests)}
    # A Role's rules are one list of data rendered into every environment's namespace: a rule
    # is used when it served a request in any of them (the scenarios run in staging).
    used_somewhere = {(role, verb, group, resource)
                      for role, namespace, verb, group, resource in
                      {(g.role, g.namespace, g.verb, g.group, g.resource) for g in granted}
                      if (role, namespace, verb, group, resource) not in unused}
    unused_anywhere = sorted({(role, verb, group, resource)
                              for role, _ns, verb, group, resource in unused
                              if (role, verb, group, resource) not in used_somewhere})
    assert not unused_anywhere, "the chart allows what no scenario used:\n" + "\n".join(
        f"  {role}: {verb} {group or 'core'}/{resource}"
        for role, verb, group, resource in unused_anywhere)


async def test_what_the_chart_does_not_grant_is_refused_with_a_clear_message(
        sim: SimCluster, services: Services) -> None:
    """Under the chart's Roles the bot's own client is refused what they do not allow, with the
    API server's 403; a command that hits one says so instead of crashing."""
    api = services.kube.for_context(None).api_client
    with pytest.raises(client.ApiException) as err:  # no escalation: it cannot grant itself
        client.RbacAuthorizationV1Api(api).create_cluster_role(
            {"metadata": {"name": "everything"},
             "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]})
    assert err.value.status == 403
    assert 'cannot create resource "clusterroles"' in json.loads(err.value.body)["message"]
    with pytest.raises(client.ApiException) as err:
        client.CoreV1Api(api).delete_collection_namespaced_secret("shop-prod")
    assert err.value.status == 403
    assert sim.get("/apis/rbac.authorization.k8s.io/v1/clusterroles/everything") is None
    # A runbook step refused by RBAC fails with the reason, never an internal error.
    create(sim, "rbac.authorization.k8s.io", "v1", "roles", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "nothing"}, "rules": []})
    for binding in sim.api.list(Route("rbac.authorization.k8s.io", "v1", "rolebindings",
                                      NS), ListQuery())["items"]:
        sim.api.delete(Route("rbac.authorization.k8s.io", "v1", "rolebindings", NS,
                             binding["metadata"]["name"]), DeleteOptions())
    reporter = RecordingReporter()
    trigger = Trigger(source="console", actor=services.settings.user_id("alice"),
                      text="scale shop-api 4")
    outcome = await services.dispatcher.dispatch(trigger, reporter)
    assert outcome.status == "failed"
    summary = reporter.views[-1].summary
    assert "forbidden" in summary.lower() or "not allowed" in summary.lower(), summary
    assert "internal error" not in summary.lower()
