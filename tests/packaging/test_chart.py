"""The Helm chart, checked with the real `helm`: it lints strictly, and what it renders for each
values file is hardened, wires exactly what `opsbot serve` reads, and grants no more than the
values say."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

import bot
from bot import metrics
from bot.cli import main as opsbot
from bot.config import ENV_VARS, settings_from_mapping
from tests.packaging.chart import NAMESPACE, RELEASE, VALUES, Render
from tests.packaging.image import dockerfile_settings
from tests.packaging.tools import CHART, ROOT, run

SECRET_VARIABLES = {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN",
                    "OPSBOT_DATABASE_URL", "OPSBOT_ALERTMANAGER_TOKEN", "ARGOCD_TOKEN"}
FULLNAME = RELEASE  # the release is named like the chart, so objects carry its name alone
CHART_VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def mounts(render: Render) -> dict[str, dict[str, Any]]:
    """The container's mounts by path, each with its volume."""
    volumes = {v["name"]: v for v in render.pod["volumes"]}
    return {m["mountPath"]: {**m, "volume": volumes[m["name"]]}
            for m in render.container["volumeMounts"]}


def env_of(render: Render) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in render.container["env"]}


def all_renders(renders: dict[str, Render]) -> list[Render]:
    return list(renders.values())


def test_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"] == bot.__version__


@pytest.mark.parametrize("name", list(VALUES))
def test_lint_strict_passes(helm: str, name: str) -> None:
    argv = [helm, "lint", "--strict", str(CHART), "--namespace", NAMESPACE]
    if VALUES[name] is not None:
        argv += ["--values", str(VALUES[name])]
    done = run(argv)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_values_file_renders_the_core_objects(renders: dict[str, Render]) -> None:
    for render in all_renders(renders):
        for kind in ("Deployment", "Service", "ServiceAccount", "ConfigMap", "NetworkPolicy"):
            assert render.all(kind), f"{render.name}: no {kind}"
        for obj in render.objects:
            if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
                assert obj["metadata"].get("namespace"), f"{render.name}: {obj['kind']} unplaced"


def test_the_pod_is_hardened(renders: dict[str, Render]) -> None:
    for render in all_renders(renders):
        pod, container = render.pod, render.container
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] >= 10000
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["runAsNonRoot"] is True
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            assert not pod.get(key)
        # No automounted token: the one the client needs is projected, short-lived, read-only.
        assert pod["automountServiceAccountToken"] is False
        assert render.one("ServiceAccount")["automountServiceAccountToken"] is False
        api = mounts(render)["/var/run/secrets/kubernetes.io/serviceaccount"]
        assert api["readOnly"] is True
        [token] = [s["serviceAccountToken"] for s in api["volume"]["projected"]["sources"]
                   if "serviceAccountToken" in s]
        assert token["expirationSeconds"] <= 3607
        # Probes on the endpoints opsbot serves.
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
        assert container["ports"] == [{"name": "http", "containerPort": 3000, "protocol": "TCP"}]
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]) <= set(resources["limits"])
        assert pod["terminationGracePeriodSeconds"] > 20  # opsbot's own shutdown grace


def test_writable_paths_are_the_images_volumes(renders: dict[str, Render]) -> None:
    """Every path the image declares writable is a volume in the pod, and the image's temp,
    home and matplotlib directories lie in one: nothing else is written on a read-only root."""
    volumes, image_env = dockerfile_settings()
    assert volumes == {"/var/lib/opsbot", "/tmp/opsbot"}
    for key in ("TMPDIR", "HOME", "MPLCONFIGDIR"):
        assert any(image_env[key].startswith(v) for v in volumes), key
    assert image_env["OPSBOT_DATABASE_URL"] == "sqlite:////var/lib/opsbot/opsbot.db"
    for render in all_renders(renders):
        found = mounts(render)
        for path in volumes:
            assert path in found and not found[path].get("readOnly"), (render.name, path)
        assert found["/tmp/opsbot"]["volume"]["emptyDir"]["sizeLimit"]


def test_opsbot_serve_is_the_entrypoint_as_a_numeric_user() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["opsbot", "serve"]' in text
    assert re.search(r"^USER \d+:\d+$", text, re.M)
    assert "HEALTHCHECK" not in text.replace("# No HEALTHCHECK", "")


def test_sqlite_is_one_replica_on_a_volume_and_postgresql_rolls(
        renders: dict[str, Render]) -> None:
    default = renders["defaults"]
    deployment = default.one("Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    claim = mounts(default)["/var/lib/opsbot"]["volume"]["persistentVolumeClaim"]["claimName"]
    assert default.one("PersistentVolumeClaim", claim)
    assert env_of(default)["OPSBOT_DATABASE_URL"]["value"].startswith("sqlite:////var/lib/opsbot/")
    assert not default.all("PodDisruptionBudget")

    ha = renders["postgresql-ha"]
    deployment = ha.one("Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert ha.one("PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    assert not ha.all("PersistentVolumeClaim")
    assert "secretKeyRef" in env_of(ha)["OPSBOT_DATABASE_URL"]["valueFrom"]
    assert ha.container["image"] == f"registry.example.com/platform/opsbot:{bot.__version__}" \
        "@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    assert default.container["image"] == f"opsbot:{bot.__version__}"
    keys = {c["topologyKey"] for c in ha.pod["topologySpreadConstraints"]}
    assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}


def test_secrets_come_only_by_reference(renders: dict[str, Render]) -> None:
    for render in all_renders(renders):
        assert not render.all("Secret"), f"{render.name} renders a Secret with values"
        env = env_of(render)
        for name in SECRET_VARIABLES & set(env):
            if env[name].get("value", "").startswith("sqlite:"):
                continue  # a file path, not a secret
            assert "value" not in env[name]
            assert env[name]["valueFrom"]["secretKeyRef"]["key"]
        config = yaml.safe_load(render.one("ConfigMap", FULLNAME)["data"]["opsbot.yaml"])
        assert not {"alertmanager_token", "argocd_token", "database_url"} & set(config)
        assert not {"bot_token", "signing_secret", "app_token"} & set(config.get("slack", {}))


def test_the_mode_decides_which_slack_secret_is_required(renders: dict[str, Render]) -> None:
    http, socket = env_of(renders["defaults"]), env_of(renders["socket-mode"])
    refs = {n: e["valueFrom"]["secretKeyRef"] for n, e in http.items()
            if "secretKeyRef" in e.get("valueFrom", {})}
    required = {n for n, ref in refs.items() if not ref.get("optional")}
    assert required == {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"}
    assert "SLACK_APP_TOKEN" in socket and "SLACK_SIGNING_SECRET" not in socket
    assert http["OPSBOT_ALERTMANAGER_TOKEN"]["valueFrom"]["secretKeyRef"]["optional"] is True


def test_the_config_map_is_what_opsbot_loads(renders: dict[str, Render], tmp_path: Path) -> None:
    """opsbot's own loader accepts each rendered opsbot.yaml with the container's variables, and
    every variable the chart sets is one opsbot reads."""
    for render in all_renders(renders):
        env = env_of(render)
        # POD_NAME and POD_NAMESPACE name the replica and its Lease's namespace
        # (bot/store/replicas.py, bot/leader.py).
        assert set(env) <= set(ENV_VARS) | {"OPSBOT_CONFIG", "POD_NAME", "POD_NAMESPACE"}, \
            render.name
        assert env["OPSBOT_CONFIG"]["value"].startswith("/etc/opsbot/config/")
        assert env["OPSBOT_CONFIG"]["value"].rsplit("/", 1)[0] in mounts(render)
        raw = yaml.safe_load(render.one("ConfigMap", FULLNAME)["data"]["opsbot.yaml"])
        plain = {k: e["value"] for k, e in env.items() if "value" in e}
        secrets = {k: "x" for k, e in env.items() if "secretKeyRef" in e.get("valueFrom", {})}
        settings = settings_from_mapping(raw, environ=plain | secrets, source=render.name)
        assert settings.listen == "0.0.0.0:3000"


def test_extra_runbooks_are_mounted_and_valid(renders: dict[str, Render], tmp_path: Path) -> None:
    render = renders["http-ingress"]
    files = render.one("ConfigMap", f"{FULLNAME}-runbooks")["data"]
    assert set(files) == set(render.values["runbooks"])
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert opsbot(["runbooks", "validate", str(tmp_path)]) == 0
    config = yaml.safe_load(render.one("ConfigMap", FULLNAME)["data"]["opsbot.yaml"])
    assert "/etc/opsbot/runbooks" in config["runbook_dirs"]
    assert mounts(render)["/etc/opsbot/runbooks"]["readOnly"] is True
    assert "/etc/opsbot/runbooks" not in mounts(renders["defaults"])


def test_roles_follow_the_environments(renders: dict[str, Render]) -> None:
    for render in all_renders(renders):
        environments = render.values.get("config", {}).get("environments")
        if environments is None:  # the chart's own: one environment in the release namespace
            environments = {"default": {"namespace": NAMESPACE}}
        here = {e["namespace"] for e in environments.values() if not e.get("kube_context")}
        roles = {r["metadata"]["namespace"]: r for r in render.all("Role")
                 if not r["metadata"]["name"].endswith(("-leader-election", "-velero"))}
        assert set(roles) == here, render.name
        backups = render.values.get("rbac", {}).get("backups", {}).get("enabled", False)
        expected = CHART_VALUES["rbac"]["namespaceRules"] + (
            CHART_VALUES["rbac"]["backups"]["namespaceRules"] if backups else [])
        for namespace, role in roles.items():
            assert role["rules"] == expected
            [binding] = [b for b in render.all("RoleBinding")
                         if b["metadata"]["namespace"] == namespace
                         and b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
                                              "kind": "Role", "name": role["metadata"]["name"]}]
            assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME,
                                            "namespace": NAMESPACE}]
        assert bool([r for r in render.all("Role") if r["metadata"]["name"].endswith("-velero")
                     and r["metadata"]["namespace"] == "velero"]) == backups


def test_the_lease_role_is_in_the_release_namespace(renders: dict[str, Render]) -> None:
    for render in all_renders(renders):
        role = render.one("Role", f"{FULLNAME}-leader-election")
        assert role["metadata"]["namespace"] == NAMESPACE
        assert role["rules"] == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                                  "verbs": ["get", "create", "update"]}]


def test_the_pod_names_its_lease_identity_and_grace(renders: dict[str, Render]) -> None:
    """The replica is named by its pod (Lease identity, execution owner); the Lease the Role
    allows is the one it is told to use; opsbot's grace ends before the kubelet's."""
    for render in all_renders(renders):
        pod = render.one("Deployment")["spec"]["template"]["spec"]
        env = {e["name"]: e for e in pod["containers"][0]["env"]}
        assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
        assert env["POD_NAMESPACE"]["valueFrom"] == {
            "fieldRef": {"fieldPath": "metadata.namespace"}}
        assert env["OPSBOT_LEASE_NAME"]["value"] == FULLNAME
        grace = float(env["OPSBOT_SHUTDOWN_GRACE"]["value"])
        assert 0 < grace < pod["terminationGracePeriodSeconds"]
        durations = [float(env[f"OPSBOT_LEASE_{k}"]["value"])
                     for k in ("RETRY_PERIOD", "RENEW_DEADLINE", "DURATION")]
        assert durations == sorted(durations) and len(set(durations)) == 3


def test_no_rule_uses_a_wildcard(renders: dict[str, Render]) -> None:
    for render in all_renders(renders):
        for role in render.all("Role") + render.all("ClusterRole"):
            for rule in role["rules"]:
                for key in ("apiGroups", "resources", "verbs"):
                    assert "*" not in rule[key], (render.name, role["metadata"]["name"], rule)
                assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"])


def test_every_rule_in_values_says_which_command_needs_it() -> None:
    """Each rule in values.yaml follows a comment naming what uses it (a later test compares
    them with the API calls the bot makes)."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    start = lines.index("rbac:")
    end = next(i for i in range(start + 1, len(lines)) if lines[i] and not lines[i][0].isspace())
    rule_lines = ("- apiGroups:", "resources:", "verbs:")
    rules = [i for i in range(start, end) if lines[i].lstrip().startswith("- apiGroups:")]
    assert len(rules) > 20
    for i in rules:
        # Rules that share a comment follow each other: walk up over them to the comment.
        j = i - 1
        while lines[j].lstrip().startswith(rule_lines):
            j -= 1
        assert lines[j].lstrip().startswith("#"), f"values.yaml:{i + 1}: a rule with no comment"


def test_network_policy_lets_in_only_http_and_out_only_what_is_used(
        renders: dict[str, Render]) -> None:
    for render in all_renders(renders):
        policy = render.one("NetworkPolicy")["spec"]
        assert policy["policyTypes"] == ["Ingress", "Egress"]
        assert policy["podSelector"]["matchLabels"] == \
            render.one("Deployment")["spec"]["selector"]["matchLabels"]
        for rule in policy["ingress"]:
            assert rule["from"] and rule["ports"] == [{"port": "http", "protocol": "TCP"}]
        ports = [{p["port"] for p in rule["ports"]} for rule in policy["egress"]]
        assert all(rule.get("to") for rule in policy["egress"]), render.name
        assert {53} in ports and {443, 6443} in ports and {443} in ports
        config = render.values.get("config", {})
        assert ({9090} in ports) == bool(config.get("prometheus_url"))
        assert ({9093} in ports) == bool(config.get("alertmanager_url"))
        assert ({8080, 443} in ports) == bool(config.get("argocd_url"))
        postgresql = render.values.get("database", {}).get("type") == "postgresql"
        assert ({5432} in ports) == postgresql


def test_the_ingress_exposes_slack_events_alone(renders: dict[str, Render]) -> None:
    ingress = renders["http-ingress"].one("Ingress")
    [rule] = ingress["spec"]["rules"]
    assert rule["http"]["paths"] == [{
        "path": "/slack/events", "pathType": "Exact",
        "backend": {"service": {"name": FULLNAME, "port": {"name": "http"}}}}]
    for name in ("defaults", "socket-mode", "postgresql-ha", "external-secret"):
        assert not renders[name].all("Ingress")


def test_the_external_secret_writes_the_secret_the_pod_reads(renders: dict[str, Render]) -> None:
    render = renders["external-secret"]
    external = render.one("ExternalSecret")
    assert external["apiVersion"] == "external-secrets.io/v1"
    assert external["spec"]["secretStoreRef"] == {"kind": "ClusterSecretStore", "name": "openbao"}
    names = {e["valueFrom"]["secretKeyRef"]["name"] for e in env_of(render).values()
             if "secretKeyRef" in e.get("valueFrom", {})}
    assert names == {external["spec"]["target"]["name"]}
    data = {d["secretKey"]: d["remoteRef"] for d in external["spec"]["data"]}
    assert set(data) == {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "OPSBOT_ALERTMANAGER_TOKEN"}
    assert all(ref == {"key": "platform/opsbot", "property": key} for key, ref in data.items())
    assert not renders["defaults"].all("ExternalSecret")


def _metric_names() -> set[str]:
    """The series names opsbot exports (a counter `x` is exported as `x_total`, a histogram
    as `x_bucket`, `x_count` and `x_sum`)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
    names = set()
    for attribute in metrics.__all__:
        for family in getattr(metrics, attribute).describe():
            names |= {family.name + s for s in suffixes.get(family.type, ("",))}
    return names


def test_alerts_and_dashboard_use_real_metrics(renders: dict[str, Render]) -> None:
    render = renders["postgresql-ha"]
    known = _metric_names()
    assert "opsbot_leader" in known  # the leader-election gauge, see the README
    rules = render.one("PrometheusRule")["spec"]["groups"][0]["rules"]
    assert {r["alert"] for r in rules} >= {"OpsbotDown", "OpsbotExecutionsFailing",
                                           "OpsbotSlackAPIErrors", "OpsbotNoLeader"}
    exprs = " ".join(r["expr"] for r in rules)
    dashboard = json.loads(render.one("ConfigMap", f"{FULLNAME}-dashboard")["data"]["opsbot.json"])
    queries = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for text in (exprs, queries):
        used = set(re.findall(r"\bopsbot_[a-z_]+", text))
        assert used and used <= known, used - known
    assert "opsbot_leader" in exprs
    selector = f'job="{FULLNAME}",namespace="{NAMESPACE}"'
    assert all(selector in r["expr"] for r in rules)
    assert render.one("ServiceMonitor")["spec"]["endpoints"][0]["path"] == "/metrics"


def test_the_dashboard_is_labelled_for_the_grafana_sidecar(renders: dict[str, Render]) -> None:
    config_map = renders["defaults"].one("ConfigMap", f"{FULLNAME}-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["opsbot.json"])["uid"] == "opsbot"


@pytest.mark.parametrize(("values", "why"), [
    ({"replicaCount": 2}, "database.type"),
    ({"config": {"slack": {"bot_token": "xoxb-1"}}}, "config.slack"),
    ({"config": {"database_url": "postgresql+psycopg://u:p@db/opsbot"}}, "config"),
    ({"config": {"alertmanager_token": "t"}}, "config"),
    ({"ingress": {"enabled": True}, "slack": {"mode": "socket"}}, "slack.mode"),
    ({"rbac": {"namespaceRules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}]}},
     "verbs"),
    ({"extraEnv": [{"name": "SLACK_BOT_TOKEN", "value": "xoxb-1"}]}, "extraEnv"),
    ({"replicas": 2}, "replicas"),
    ({"config": {"default_environment": "prod"}}, "dependency"),
    ({"image": {"digest": "latest"}}, "image.digest"),
])
def test_the_schema_refuses(helm: str, tmp_path: Path, values: dict[str, Any], why: str) -> None:
    file = tmp_path / "values.yaml"
    file.write_text(yaml.safe_dump(values))
    done = run([helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
                "--values", str(file)])
    assert done.returncode != 0
    assert why in done.stderr, done.stderr


def _value_paths(node: Any, path: str = "") -> list[str]:
    """Dotted paths of values.yaml's settings (maps of settings are walked; lists, free-form
    maps and empty maps are one setting each)."""
    free_form = {"config", "runbooks", "resources", "podSecurityContext", "securityContext"}
    if isinstance(node, dict) and node and path not in free_form \
            and not path.startswith("networkPolicy.egress."):
        return [p for key, child in node.items()
                for p in _value_paths(child, f"{path}.{key}" if path else key)]
    return [path]


def test_the_chart_readme_describes_every_value() -> None:
    readme = (CHART / "README.md").read_text()
    documented = set(re.findall(r"^\| `([^`]+)` \|", readme, re.M))
    paths = _value_paths(CHART_VALUES)
    assert len(paths) > 80
    assert set(paths) <= documented, sorted(set(paths) - documented)
    assert "`opsbot_leader`" in readme or "**`opsbot_leader`**" in readme
