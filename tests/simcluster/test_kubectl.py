"""kubectl as the reference: the real kubectl v1.31, unmodified, drives the simulated cluster
(over TLS, with the kubeconfig it writes) for every kind and verb opsbot uses, and the tests
assert on kubectl's own output. A command the simulation cannot serve fails here with kubectl's
message; what is out of scope is listed in docs/simcluster.md."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from simcluster import SimCluster
from tests.packaging.tools import require_tool

NS = "shop-staging"
Kubectl = Callable[..., str]


@pytest.fixture
def kubectl(sim: SimCluster, tmp_path: Path) -> Kubectl:
    kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
    binary = require_tool("kubectl")

    def run(*args: str, stdin: str | None = None, ok: bool = True) -> str:
        done = subprocess.run([binary, "--kubeconfig", kubeconfig, "--request-timeout=20s",
                               *args], input=stdin, capture_output=True, text=True, timeout=90,
                              check=False)
        if ok:
            assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
            return done.stdout
        assert done.returncode != 0, f"kubectl {' '.join(args)} succeeded: {done.stdout}"
        return done.stderr

    return run


def table(text: str) -> list[list[str]]:
    """kubectl's table as rows of cells (columns are two or more spaces apart)."""
    return [re.split(r"\s{2,}", line.strip()) for line in text.strip().splitlines()]


def as_json(text: str) -> Any:
    return json.loads(text)


# -- get ------------------------------------------------------------------------------------

def test_get_prints_the_api_servers_columns(kubectl: Kubectl) -> None:
    deployments = table(kubectl("get", "deployments", "-n", NS))
    assert deployments[0] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert [row[:4] for row in deployments[1:]] == [
        ["shop-api", "3/3", "3", "3"], ["shop-web", "2/2", "2", "2"],
        ["shop-worker", "0/1", "1", "0"]]
    pods = table(kubectl("get", "pods", "-n", NS, "-l", "app=shop-worker"))
    assert pods[0] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    [worker] = pods[1:]
    assert worker[1:4] == ["0/1", "CrashLoopBackOff", "7"]
    replica_sets = table(kubectl("get", "replicasets", "-n", NS, "-l", "app=shop-api"))
    assert replica_sets[0] == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
    assert sorted(row[1] for row in replica_sets[1:]) == ["0", "0", "3"]
    services = table(kubectl("get", "services", "-n", NS))
    assert services[0] == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert "shop-api" in {row[0] for row in services[1:]}


def test_get_json_and_selectors(kubectl: Kubectl) -> None:
    deployment = as_json(kubectl("get", "deployment", "shop-api", "-n", NS, "-o", "json"))
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == \
        "registry.example.com/shop/api:1.4.0"
    assert deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    by_label = as_json(kubectl("get", "pods", "-n", NS, "-l", "app in (shop-api,shop-web)",
                               "-o", "json"))
    assert len(by_label["items"]) == 5
    by_field = as_json(kubectl("get", "pods", "-n", NS, "-o", "json", "--field-selector",
                               "metadata.name!=nothing,status.phase=Running"))
    assert len(by_field["items"]) == 6
    names = kubectl("get", "deployments", "-A", "-o", "name").split()
    assert "deployment.apps/shop-api" in names and len(names) == 5


def test_get_events_by_field_selector(kubectl: Kubectl) -> None:
    pod = kubectl("get", "pods", "-n", NS, "-l", "app=shop-worker", "-o", "name").strip()
    name = pod.removeprefix("pod/")
    events = table(kubectl("get", "events", "-n", NS, "--field-selector",
                           f"involvedObject.name={name},type=Warning"))
    assert events[0] == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert {row[2] for row in events[1:]} == {"BackOff"}
    assert all(row[3] == f"pod/{name}" for row in events[1:])


def test_get_watch_ends_at_its_timeout(kubectl: Kubectl) -> None:
    watched = table(kubectl("get", "deployments", "-n", NS, "--watch",
                            "--request-timeout=2s"))
    assert watched[0][0] == "NAME" and "shop-api" in {row[0] for row in watched[1:]}


# -- describe -------------------------------------------------------------------------------

def test_describe_deployment_and_pod(kubectl: Kubectl) -> None:
    described = kubectl("describe", "deployment", "shop-api", "-n", NS)
    assert re.search(r"^Replicas:\s+3 desired \| 3 updated \| 3 total \| 3 available",
                     described, re.M), described
    assert re.search(r"Image:\s+registry.example.com/shop/api:1.4.0", described)
    assert re.search(r"^NewReplicaSet:\s+shop-api-\w+ \(3/3 replicas created\)", described, re.M)
    pod = kubectl("describe", "pods", "-n", NS, "-l", "app=shop-worker")
    assert re.search(r"Last State:\s+Terminated\s+Reason:\s+OOMKilled", pod), pod
    assert re.search(r"Restart Count:\s+7", pod)


# -- rollout, scale, set image -----------------------------------------------------------------

def test_rollout_status_history_undo(kubectl: Kubectl, sim: SimCluster) -> None:
    assert kubectl("rollout", "status", "deployment/shop-api", "-n", NS).strip() == \
        'deployment "shop-api" successfully rolled out'
    history = table(kubectl("rollout", "history", "deployment/shop-api", "-n", NS))
    assert history[1] == ["REVISION", "CHANGE-CAUSE"]
    assert [row[0] for row in history[2:]] == ["1", "2", "3"]
    revision = kubectl("rollout", "history", "deployment/shop-api", "-n", NS, "--revision=1")
    assert "registry.example.com/shop/api:1.2.0" in revision
    assert kubectl("rollout", "undo", "deployment/shop-api", "-n", NS,
                   "--to-revision=1").strip() == "deployment.apps/shop-api rolled back"
    sim.wait_idle()
    assert "successfully rolled out" in kubectl("rollout", "status", "deployment/shop-api",
                                                "-n", NS, "--timeout=30s")
    image = kubectl("get", "deployment", "shop-api", "-n", NS, "-o",
                    "jsonpath={.spec.template.spec.containers[0].image} "
                    "{.metadata.annotations.deployment\\.kubernetes\\.io/revision}")
    assert image == "registry.example.com/shop/api:1.2.0 4"


def test_rollout_restart_pause_resume(kubectl: Kubectl, sim: SimCluster) -> None:
    assert kubectl("rollout", "restart", "deployment/shop-web", "-n", NS).strip() == \
        "deployment.apps/shop-web restarted"
    restarted = as_json(kubectl("get", "deployment", "shop-web", "-n", NS, "-o", "json"))
    assert "kubectl.kubernetes.io/restartedAt" in \
        restarted["spec"]["template"]["metadata"]["annotations"]
    assert kubectl("rollout", "pause", "deployment/shop-web", "-n", NS).strip() == \
        "deployment.apps/shop-web paused"
    assert as_json(kubectl("get", "deployment", "shop-web", "-n", NS, "-o",
                           "json"))["spec"]["paused"] is True
    assert kubectl("rollout", "resume", "deployment/shop-web", "-n", NS).strip() == \
        "deployment.apps/shop-web resumed"
    sim.wait_idle()
    assert "successfully rolled out" in kubectl("rollout", "status", "deployment/shop-web",
                                                "-n", NS, "--timeout=30s")


def test_scale_and_set_image(kubectl: Kubectl, sim: SimCluster) -> None:
    assert kubectl("scale", "deployment/shop-web", "--replicas=4", "-n", NS).strip() == \
        "deployment.apps/shop-web scaled"
    assert kubectl("set", "image", "deployment/shop-web",
                   "web=registry.example.com/shop/web:2.2.0", "-n", NS).strip() == \
        "deployment.apps/shop-web image updated"
    sim.wait_idle()
    [row] = table(kubectl("get", "deployment", "shop-web", "-n", NS))[1:]
    assert row[:4] == ["shop-web", "4/4", "4", "4"]


# -- patch, apply, delete ---------------------------------------------------------------------

def test_patch_strategic_merge_and_json(kubectl: Kubectl) -> None:
    kubectl("patch", "deployment", "shop-web", "-n", NS, "-p",
            '{"spec":{"template":{"spec":{"containers":[{"name":"web","env":'
            '[{"name":"MODE","value":"a"}]}]}}}}')
    kubectl("patch", "deployment", "shop-web", "-n", NS, "--type=merge", "-p",
            '{"metadata":{"labels":{"team":"shop"}}}')
    kubectl("patch", "deployment", "shop-web", "-n", NS, "--type=json", "-p",
            '[{"op":"replace","path":"/spec/replicas","value":3}]')
    patched = as_json(kubectl("get", "deployment", "shop-web", "-n", NS, "-o", "json"))
    [container] = patched["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example.com/shop/web:2.1.0"  # merged by name
    assert {"name": "MODE", "value": "a"} in container["env"]  # added to the list, by name
    assert {"name": "SHOP_ENV", "value": "staging"} in container["env"]
    assert patched["metadata"]["labels"]["team"] == "shop"
    assert patched["spec"]["replicas"] == 3


def test_apply_server_side(kubectl: Kubectl) -> None:
    manifest = json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": "shop-flags", "namespace": NS},
                           "data": {"checkout": "on"}})
    assert kubectl("apply", "--server-side", "--validate=false", "-f", "-",
                   stdin=manifest).strip() == "configmap/shop-flags serverside-applied"
    changed = manifest.replace('"on"', '"off"')
    kubectl("apply", "--server-side", "--validate=false", "-f", "-", stdin=changed)
    assert kubectl("get", "configmap", "shop-flags", "-n", NS, "-o",
                   "jsonpath={.data.checkout}") == "off"


def test_delete_with_propagation(kubectl: Kubectl, sim: SimCluster) -> None:
    assert kubectl("delete", "deployment", "shop-web", "-n", NS,
                   "--cascade=foreground").strip() == 'deployment.apps "shop-web" deleted'
    sim.wait_idle()
    assert kubectl("get", "replicasets,pods", "-n", NS, "-l", "app=shop-web", "-o",
                   "name").strip() == ""
    missing = kubectl("get", "deployment", "shop-web", "-n", NS, ok=False)
    assert 'deployments.apps "shop-web" not found' in missing


# -- logs -------------------------------------------------------------------------------------

def test_logs_previous_tail_since(kubectl: Kubectl) -> None:
    previous = kubectl("logs", "deployment/shop-worker", "-n", NS, "--previous",
                       "--tail=1").strip()
    assert previous.endswith(
        "ERROR worker: out of memory while processing batch 8812 (rss=255Mi)")
    lines = kubectl("logs", "-l", "app=shop-api", "-n", NS, "--tail=1", "--since=2h",
                    "--prefix").strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("[pod/shop-api-") for line in lines)
    stamped = kubectl("logs", "deployment/shop-api", "-n", NS, "--timestamps", "--tail=1")
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z ", stamped), stamped


# -- custom resources -----------------------------------------------------------------------

def test_velero_argo_rollouts_and_argo_cd_as_custom_resources(kubectl: Kubectl,
                                                              sim: SimCluster) -> None:
    backup = {"apiVersion": "velero.io/v1", "kind": "Backup",
              "metadata": {"name": "by-hand", "namespace": "velero"},
              "spec": {"includedNamespaces": [NS], "storageLocation": "default"}}
    kubectl("create", "--validate=false", "-f", "-", stdin=json.dumps(backup))
    sim.wait_idle()
    assert kubectl("get", "backups.velero.io", "by-hand", "-n", "velero", "-o",
                   "jsonpath={.status.phase}") == "Completed"
    restore = {"apiVersion": "velero.io/v1", "kind": "Restore",
               "metadata": {"name": "by-hand", "namespace": "velero"},
               "spec": {"backupName": "by-hand",
                        "namespaceMapping": {NS: "shop-staging-copy"}}}
    kubectl("create", "--validate=false", "-f", "-", stdin=json.dumps(restore))
    sim.wait_idle()
    assert kubectl("get", "restores.velero.io", "by-hand", "-n", "velero", "-o",
                   "jsonpath={.status.phase}") == "Completed"
    rollout = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
               "metadata": {"name": "shop-canary", "namespace": NS},
               "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "shop-canary"}},
                        "template": {"metadata": {"labels": {"app": "shop-canary"}},
                                     "spec": {"containers": [{"name": "app",
                                                              "image": "canary:1.0.0"}]}},
                        "strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}}}
    kubectl("create", "--validate=false", "-f", "-", stdin=json.dumps(rollout))
    sim.wait_idle()
    kubectl("patch", "rollouts.argoproj.io", "shop-canary", "-n", NS, "--type=merge", "-p",
            '{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"canary:1.1.0"}]}}}}')
    sim.wait_idle()
    paused = as_json(kubectl("get", "rollouts.argoproj.io", "shop-canary", "-n", NS, "-o",
                             "json"))
    assert paused["status"]["phase"] == "Paused"
    application = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                   "metadata": {"name": "shop-api-staging", "namespace": "argocd"},
                   "spec": {"project": "default",
                            "source": {"repoURL": "https://git.example.com/shop.git",
                                       "path": "deploy", "targetRevision": "main"},
                            "destination": {"namespace": NS,
                                            "server": "https://kubernetes.default.svc"}}}
    kubectl("create", "namespace", "argocd")
    kubectl("create", "--validate=false", "-f", "-", stdin=json.dumps(application))
    kubectl("patch", "applications.argoproj.io", "shop-api-staging", "-n", "argocd",
            "--type=merge", "-p", '{"spec":{"source":{"targetRevision":"v1.5.0"}}}')
    # The CRDs' printer columns: Argo CD's sync and health (revision and project with -o wide),
    # Argo Rollouts' replica counts.
    kubectl("patch", "applications.argoproj.io", "shop-api-staging", "-n", "argocd",
            "--type=merge", "-p", '{"status":{"sync":{"status":"Synced","revision":"abc123"},'
            '"health":{"status":"Healthy"}}}')
    names = table(kubectl("get", "applications.argoproj.io", "-n", "argocd"))
    assert names == [["NAME", "SYNC STATUS", "HEALTH STATUS"],
                     ["shop-api-staging", "Synced", "Healthy"]]
    wide = table(kubectl("get", "applications.argoproj.io", "-n", "argocd", "-o", "wide"))
    assert wide == [["NAME", "SYNC STATUS", "HEALTH STATUS", "REVISION", "PROJECT"],
                    ["shop-api-staging", "Synced", "Healthy", "abc123", "default"]]
    rollouts = table(kubectl("get", "rollouts.argoproj.io", "-n", NS))
    assert rollouts[0] == ["NAME", "DESIRED", "CURRENT", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert rollouts[1][:2] == ["shop-canary", "2"]
    assert kubectl("get", "applications.argoproj.io", "shop-api-staging", "-n", "argocd", "-o",
                   "jsonpath={.spec.source.targetRevision}") == "v1.5.0"


# -- impersonation --------------------------------------------------------------------------

ROLE = """
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader, namespace: shop-staging}
rules:
- {apiGroups: [""], resources: [pods], verbs: [get, list]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reader-reads, namespace: shop-staging}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}
subjects:
- {kind: ServiceAccount, name: reader, namespace: shop-staging}
- {kind: User, apiGroup: rbac.authorization.k8s.io, name: dana}
"""


def test_as_decides_as_the_impersonated_user(kubectl: Kubectl, sim: SimCluster,
                                              tmp_path: Path) -> None:
    kubectl("apply", "--validate=false", "-f", "-", stdin=ROLE)  # no OpenAPI document served
    # The admin may impersonate anyone; the request is then decided as that user.
    for who in ("system:serviceaccount:shop-staging:reader", "dana"):
        pods = kubectl("get", "pods", "-n", NS, "--as", who, "-o", "name")
        assert "pod/shop-api-" in pods
        refused = kubectl("get", "deployments", "-n", NS, "--as", who, ok=False)
        assert (f'User "{who}" cannot list resource "deployments" in API group "apps" in the '
                f'namespace "{NS}"') in refused
    assert kubectl("auth", "can-i", "list", "pods", "-n", NS, "--as", "dana").strip() == "yes"
    kubectl("auth", "can-i", "list", "pods", "-n", NS, "--as", "erin", ok=False)  # exit 1: no
    # A group the user is impersonated into counts: system:masters is the admin.
    assert "shop-api" in kubectl("get", "deployments", "-n", NS, "--as", "erin",
                                 "--as-group", "system:masters")

    # Who lacks the `impersonate` verb cannot become someone else.
    reader = sim.write_kubeconfig(tmp_path / "reader.kubeconfig",
                                  token=sim.service_account_token(NS, "reader"))
    binary = require_tool("kubectl")
    done = subprocess.run([binary, "--kubeconfig", str(reader), "get", "pods", "-n", NS,
                           "--as", "dana"], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode != 0
    assert ('users "dana" is forbidden: User "system:serviceaccount:shop-staging:reader" '
            'cannot impersonate resource "users" in API group "" at the cluster scope'
            ) in done.stderr
