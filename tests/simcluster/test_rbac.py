"""RBAC as the API server enforces it: a ServiceAccount's token (minted, or by TokenRequest as
`kubectl create token` asks) may do what its Roles and ClusterRoles allow and gets the API
server's 403 Status otherwise; `kubectl auth can-i` answers through SelfSubjectAccessReview;
the admin token may do anything. The real kubectl and the `kubernetes` client alike."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from kubernetes import client, config

from simcluster import SimCluster
from tests.packaging.tools import require_tool

NS = "shop-staging"
MANIFEST = """
apiVersion: v1
kind: ServiceAccount
metadata: {name: bot, namespace: shop-staging}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: deployer, namespace: shop-staging}
rules:
- apiGroups: [apps]
  resources: [deployments, deployments/scale]
  verbs: [get, list, watch, patch]
- apiGroups: [""]
  resources: [configmaps]
  resourceNames: [shop-config]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: bot-deployer, namespace: shop-staging}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: deployer}
subjects: [{kind: ServiceAccount, name: bot, namespace: shop-staging}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: namespace-reader}
rules:
- {apiGroups: [""], resources: [namespaces], verbs: [list]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: bot-namespaces}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: namespace-reader}
subjects: [{kind: Group, name: "system:serviceaccounts:shop-staging"}]
"""


def kubectl(kubeconfig: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("kubectl"), "--kubeconfig", kubeconfig,
                           "--request-timeout=20s", *args],
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def bot(sim: SimCluster, tmp_path: Path) -> str:
    """A kubeconfig of the ServiceAccount `bot`, its token from `kubectl create token`."""
    admin = sim.write_kubeconfig(tmp_path / "admin")
    (tmp_path / "rbac.yaml").write_text(MANIFEST)
    applied = kubectl(admin, "apply", "--validate=false", "-f", str(tmp_path / "rbac.yaml"))
    assert applied.returncode == 0, applied.stderr
    token = kubectl(admin, "create", "token", "bot", "-n", NS)
    assert token.returncode == 0, token.stderr
    return sim.write_kubeconfig(tmp_path / "bot", token=token.stdout.strip())


def test_kubectl_auth_can_i_answers_from_the_rules(bot: str) -> None:
    def can(*args: str) -> str:
        return kubectl(bot, "auth", "can-i", *args).stdout.strip()

    assert can("patch", "deployments", "-n", NS) == "yes"
    assert can("patch", "deployments/scale", "-n", NS) == "yes"
    assert can("delete", "deployments", "-n", NS) == "no"
    assert can("patch", "deployments", "-n", "shop-prod") == "no"  # a Role binds in its namespace
    assert can("get", "configmaps/shop-config", "-n", NS) == "yes"  # by resource name
    assert can("get", "configmaps/other", "-n", NS) == "no"
    assert can("list", "namespaces") == "yes"  # a ClusterRoleBinding to the SA's group
    listed = kubectl(bot, "auth", "can-i", "--list", "-n", NS)
    assert listed.returncode == 0 and "deployments.apps/scale" in listed.stdout


def test_what_is_allowed_works_and_what_is_not_gets_the_api_servers_403(bot: str) -> None:
    scaled = kubectl(bot, "scale", "deployment", "shop-web", "--replicas=3", "-n", NS)
    assert scaled.returncode == 0, scaled.stderr
    pods = kubectl(bot, "get", "pods", "-n", NS)
    assert pods.returncode == 1
    assert pods.stderr.strip() == (
        'Error from server (Forbidden): pods is forbidden: User '
        '"system:serviceaccount:shop-staging:bot" cannot list resource "pods" in API group "" '
        'in the namespace "shop-staging"')
    deleted = kubectl(bot, "delete", "deployment", "shop-web", "-n", "shop-prod")
    assert 'deployments.apps "shop-web" is forbidden' in deleted.stderr
    assert 'cannot delete resource "deployments" in API group "apps"' in deleted.stderr


def test_the_python_client_sees_the_status_body(bot: str, sim: SimCluster) -> None:
    with config.new_client_from_config(config_file=bot) as api, \
            pytest.raises(client.ApiException) as err:
        client.CoreV1Api(api).read_namespaced_secret("anything", "shop-prod")
    status = json.loads(err.value.body)
    assert (err.value.status, status["kind"], status["reason"], status["code"]) == (
        403, "Status", "Forbidden", 403)
    assert status["details"] == {"name": "anything", "group": "", "kind": "secrets"}
    assert status["message"] == (
        'secrets "anything" is forbidden: User "system:serviceaccount:shop-staging:bot" cannot '
        'get resource "secrets" in API group "" in the namespace "shop-prod"')
    with config.new_client_from_config(config_file=bot) as api, \
            pytest.raises(client.ApiException) as err:
        client.RbacAuthorizationV1Api(api).list_cluster_role()
    assert json.loads(err.value.body)["message"].endswith(
        'cannot list resource "clusterroles" in API group "rbac.authorization.k8s.io" at the '
        'cluster scope')


def test_the_admin_token_may_do_anything_and_unknown_tokens_nothing(
    sim: SimCluster, tmp_path: Path,
) -> None:
    admin = sim.write_kubeconfig(tmp_path / "admin")
    assert kubectl(admin, "auth", "can-i", "delete", "namespaces").stdout.strip() == "yes"
    stranger = sim.write_kubeconfig(tmp_path / "stranger", token="not-a-token")
    refused = kubectl(stranger, "get", "pods", "-n", NS)
    assert refused.returncode == 1 and "Unauthorized" in refused.stderr
    minted = sim.write_kubeconfig(tmp_path / "nobody",
                                  token=sim.service_account_token(NS, "nobody"))
    assert kubectl(minted, "auth", "can-i", "get", "pods", "-n", NS).stdout.strip() == "no"
