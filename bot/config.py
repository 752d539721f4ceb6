"""Configuration: `opsbot.yaml` validated by pydantic, with environment variables winning.

Secrets are `SecretStr` so they never reach logs, reprs or chat.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from bot import messages
from bot.errors import ConfigError, UnknownName, UsageError
from bot.names import check_dns1123_label, closest, is_dns1123_label, is_dns1123_subdomain
from bot.numbers import parse_duration

__all__ = [
    "PATCHABLE_KINDS",
    "AlertsConfig",
    "AppConfig",
    "BackupConfig",
    "ChecklistConfig",
    "EnvironmentConfig",
    "GrafanaConfig",
    "HttpConfig",
    "K8sPatchConfig",
    "LokiConfig",
    "MetricsQueries",
    "PatchableKind",
    "RegistryConfig",
    "ReplicasConfig",
    "RoleConfig",
    "Settings",
    "SlackConfig",
    "VulnerabilityLimits",
    "load_settings",
]

# Variables from the contract, mapped to the settings field they override.
ENV_VARS: dict[str, str] = {
    "OPSBOT_DATABASE_URL": "database_url",
    "SLACK_BOT_TOKEN": "slack.bot_token",
    "SLACK_SIGNING_SECRET": "slack.signing_secret",
    "SLACK_APP_TOKEN": "slack.app_token",
    "SLACK_API_URL": "slack.api_url",
    "KUBECONFIG": "kubeconfig",
    "PROMETHEUS_URL": "prometheus_url",
    "ALERTMANAGER_URL": "alertmanager_url",
    "OPSBOT_ALERTMANAGER_TOKEN": "alertmanager_token",
    "ARGOCD_URL": "argocd_url",
    "ARGOCD_TOKEN": "argocd_token",
    "LOKI_URL": "loki.url",
    "GRAFANA_URL": "grafana.url",
    "OPSBOT_LISTEN": "listen",
    "OPSBOT_LEADER_ELECTION": "replicas.leader_election",
    "OPSBOT_LEASE_NAME": "replicas.lease_name",
    "OPSBOT_LEASE_NAMESPACE": "replicas.lease_namespace",
    "OPSBOT_LEASE_DURATION": "replicas.lease_duration_seconds",
    "OPSBOT_LEASE_RENEW_DEADLINE": "replicas.renew_deadline_seconds",
    "OPSBOT_LEASE_RETRY_PERIOD": "replicas.retry_period_seconds",
    "OPSBOT_HEARTBEAT_SECONDS": "replicas.heartbeat_seconds",
    "OPSBOT_SHUTDOWN_GRACE": "replicas.shutdown_grace_seconds",
    "OPSBOT_LOG_FORMAT": "log_format",
}


# A Velero backup kept for less than this is gone before anyone could restore it.
BACKUP_TTL_SHORTEST = timedelta(minutes=1)


def _duration(text: str, *, what: str, shortest: timedelta | None = None) -> None:
    """A configured duration, within opsbot's limits, or the ValueError pydantic reports."""
    try:
        parse_duration(text, shortest=shortest, what=what)
    except UsageError as exc:
        raise ValueError(str(exc)) from None


class _Model(BaseModel):
    # Strict: a number is a YAML number (not "1_000", "+3" or " 3 " in quotes), and never
    # .inf or .nan.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


# Logs, metrics, Grafana (issue 14 items 1-3) ---------------------------------------------------

_UID = re.compile(r"[A-Za-z0-9_-]{1,40}")


def _dashboard_uid(uid: str, *, what: str) -> str:
    # A uid goes into a URL path (/d/<uid>): Grafana's uids are letters, digits, - and _.
    if not _UID.fullmatch(uid):
        raise ValueError(f"{what} `{uid}` is not a Grafana uid (letters, digits, - and _, "
                         "at most 40)")
    return uid


def _log_labels(labels: Mapping[str, str], *, what: str) -> Mapping[str, str]:
    if not labels:
        raise ValueError(f"{what}: at least one label (Loki needs a stream selector)")
    for name, template in labels.items():
        if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", name):
            raise ValueError(f"{what}: `{name}` is not a label name")
        try:
            template.format(app="a", namespace="n", env="e", workload="w")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"{what}.{name}: `{template}` may use {{app}}, {{namespace}}, "
                             f"{{env}} and {{workload}} only ({exc})") from None
    return labels


class LokiConfig(_Model):
    """Where `logs` reads when the platform ships logs to Loki (Promtail, Fluentd, Alloy)."""

    url: str | None = None  # e.g. http://loki-gateway.monitoring; user:password@ for basic auth
    tenant: str | None = None  # X-Scope-OrgID, for a multi-tenant Loki
    # The stream selector of an app's logs: label name -> value; {app}, {namespace}, {env},
    # {workload} are filled in, and every value is quoted as a LogQL string.
    labels: dict[str, str] = {"namespace": "{namespace}", "app": "{app}"}
    # What `diag` calls an error line (a LogQL line filter regex, from the configuration only).
    error_filter: str = "(?i)(error|fatal|panic|exception)"
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)

    @model_validator(mode="after")
    def _valid(self) -> LokiConfig:
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError("loki.url must be an http(s) URL")
        _log_labels(self.labels, what="loki.labels")
        return self


class GrafanaConfig(_Model):
    """Links to Grafana in messages: an app's dashboard over the right time range, and Explore
    for the PromQL behind each verification check."""

    url: str | None = None  # e.g. https://grafana.example.com (a sub-path is kept)
    dashboard: str | None = None  # dashboard uid for apps that name none
    datasource: str | None = None  # the Prometheus data source uid for Explore links
    org_id: int = Field(default=1, ge=1)
    margin_seconds: int = Field(default=300, ge=0, le=86400)  # after a deploy's end

    @model_validator(mode="after")
    def _valid(self) -> GrafanaConfig:
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError("grafana.url must be an http(s) URL")
        for what, uid in (("grafana.dashboard", self.dashboard),
                          ("grafana.datasource", self.datasource)):
            if uid is not None:
                _dashboard_uid(uid, what=what)
        return self


# The default golden signals, as the usual exporters name them: an app's own
# http_requests_total{code} and http_request_duration_seconds (what the simulated cluster's
# traffic serves), cAdvisor's container_* and kube-state-metrics' kube_pod_*. Jinja2 templates:
# `selector` is `namespace="…",app="…"`, `pods` is `namespace="…",pod=~"<workload>-.*"` (values
# quoted as PromQL strings), `window` the rate window and `since` the command's --since.
_SEL = "{{ selector }}"
_PODS = "{{ pods }}"


class MetricsQueries(_Model):
    """The PromQL of each golden signal `metrics` shows; an empty query leaves a signal out."""

    window: str = "5m"  # rate() window of the numbers
    request_rate: str = f"sum(rate(http_requests_total{{ {_SEL} }}[{{{{ window }}}}]))"
    error_ratio: str = (
        f'sum(rate(http_requests_total{{ {_SEL},code=~"5.." }}[{{{{ window }}}}])) / '
        f"sum(rate(http_requests_total{{ {_SEL} }}[{{{{ window }}}}]))")
    p99_latency: str = (
        "histogram_quantile(0.99, sum by (le) "
        f"(rate(http_request_duration_seconds_bucket{{ {_SEL} }}[{{{{ window }}}}])))")
    cpu: str = (
        f'sum(rate(container_cpu_usage_seconds_total{{ {_PODS},container!="" }}'
        "[{{ window }}])) / "
        f'sum(kube_pod_container_resource_limits{{ {_PODS},resource="cpu" }})')
    memory: str = (
        f'sum(container_memory_working_set_bytes{{ {_PODS},container!="" }}) / '
        f'sum(kube_pod_container_resource_limits{{ {_PODS},resource="memory" }})')
    restarts: str = (
        f"sum(increase(kube_pod_container_status_restarts_total{{ {_PODS} }}[{{{{ since }}}}]))")

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        _duration(value, what="metrics.window", shortest=timedelta(seconds=1))
        return value


_CHANNEL_ID = re.compile(r"[CG][A-Z0-9]{2,30}")


def _channel_ids(value: list[str], *, what: str) -> list[str]:
    """Channels are named by id (C0DEPLOYS): a channel's name can change, its id cannot, and
    a `#deploys` that never matches would silently refuse everything."""
    for entry in value:
        if not _CHANNEL_ID.fullmatch(entry):
            raise ValueError(messages.config_channel_id(what, entry))
    return value


class ChecklistConfig(_Model):
    """What people confirm around a change: `before`, each approver in the approval dialog;
    `after`, the requester, in the thread of the finished change. `runbooks` (patterns) says
    which changes carry it; an app's items follow its environment's."""

    before: list[str] = []
    after: list[str] = []
    runbooks: list[str] = ["deploy"]

    @field_validator("before", "after")
    @classmethod
    def _items(cls, value: list[str]) -> list[str]:
        if len(value) > CHECKLIST_ITEMS:
            raise ValueError(messages.config_checklist_too_long(CHECKLIST_ITEMS))
        for item in value:
            if not item.strip() or len(item) > CHECKLIST_ITEM_LENGTH or "\n" in item:
                raise ValueError(messages.config_checklist_item(item, CHECKLIST_ITEM_LENGTH))
        return [item.strip() for item in value]


CHECKLIST_ITEMS = 10  # a Slack checkbox group holds at most 10 options
CHECKLIST_ITEM_LENGTH = 75  # Slack shows at most 75 characters of a checkbox option


class Bounds(_Model):
    min: int = Field(default=0, ge=0)
    max: int = Field(default=50, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Bounds:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class DeployConfig(_Model):
    """How an app is deployed: straight to the workload, through Argo CD, or an Argo Rollout."""

    strategy: Literal["kubernetes", "argocd", "argo-rollouts"] = "kubernetes"
    argocd_app: str = "{app}-{env}"  # Argo CD Application name; {app} and {env} are filled in
    rollout: str | None = None  # Argo Rollouts Rollout name; defaults to the workload name
    timeout_seconds: int = Field(default=600, ge=1, le=86400)  # how long a rollout may take


class AnalysisMetric(_Model):
    """One PromQL query and the condition its value must meet, as in an AnalysisTemplate."""

    name: str
    query: str  # Jinja2 template; app, namespace, env, workload are available
    success: str  # a Jinja2 expression over `result`, e.g. "result < 0.01"
    unit: str = ""


class AnalysisConfig(_Model):
    """Post-deploy verification, modelled on Argo Rollouts' AnalysisTemplate."""

    metrics: list[AnalysisMetric] = []
    interval_seconds: float = Field(default=30, gt=0, le=3600)
    count: int = Field(default=5, ge=1)
    failure_limit: int = Field(default=0, ge=0)  # measurements allowed to fail
    initial_delay_seconds: float = Field(default=0, ge=0, le=3600)
    inconclusive_limit: int = Field(default=1, ge=0)  # empty results or query errors allowed


class AppConfig(_Model):
    """An application: one workload per environment, addressed by the app name."""

    name: str = ""
    kind: Literal["Deployment", "StatefulSet"] = "Deployment"
    workload: str = ""  # defaults to the app name
    container: str | None = None  # the main container; defaults to the first
    image: str | None = None  # repository, so a bare tag can be deployed
    replicas: Bounds = Bounds()
    environments: list[str] | None = None  # None: every environment
    deploy: DeployConfig = DeployConfig()
    analysis: AnalysisConfig = AnalysisConfig()
    # Observing the app (logs, metrics, Grafana; see the block "Logs, metrics, Grafana" below).
    dashboard: str | None = None  # Grafana dashboard uid; None: grafana.dashboard
    metrics: MetricsQueries | None = None  # golden-signal queries replacing the environment's
    log_labels: dict[str, str] | None = None  # Loki stream selector replacing loki.labels
    checklist: ChecklistConfig | None = None  # items after the environment's (docs/approvals.md)

    @property
    def workload_name(self) -> str:
        return self.workload or self.name


class ApprovalPolicy(_Model):
    approvals: int = Field(default=1, ge=1)
    users: list[str] = []
    groups: list[str] = []
    allow_self_approval: bool = False
    ttl_minutes: int = Field(default=30, ge=1, le=10080)  # at most 7 days
    runbooks: list[str] | None = None  # patterns; None: every mutating runbook needs approval
    channels: list[str] = []  # Slack channels where requests may be made; empty: any

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: list[str]) -> list[str]:
        return _channel_ids(value, what="approval.channels")


class PrecheckConfig(_Model):
    no_critical_alerts: bool = True  # refuse while a critical alert fires for the app
    healthy: bool = True  # refuse while the workload is not fully ready
    backup: bool = False  # a Velero backup of the app before a deploy changes anything
    # Ask the image's registry for the manifest before Apply (a missing tag refuses). None:
    # where `registries` names the image's registry host; true: for every image (a host not
    # under `registries` is asked at https://<host>, anonymously); false: off.
    image_exists: bool | None = None


class VulnerabilityLimits(_Model):
    """Trivy Operator's findings the new image may carry (its VulnerabilityReports)."""

    max_critical: int = Field(default=0, ge=0)
    max_high: int | None = Field(default=None, ge=0)  # None: any number of high findings
    # Over a limit: refuse, or (in an environment that requires approval) let the request go
    # to approvers with the counts in its plan, for them to accept.
    on_exceed: Literal["refuse", "approve"] = "refuse"


class EnvironmentDeployConfig(_Model):
    auto_rollback: bool = True  # roll back when the rollout or the analysis fails
    verify: bool = True  # run the app's analysis after a deploy
    prechecks: PrecheckConfig = PrecheckConfig()
    # A check the deploy wants that cannot run (no Alertmanager for the alert pre-check; no
    # Prometheus, or no metrics, for Verify; Alertmanager not answering): "refuse" the deploy
    # before anything changes, or "warn" and go on with the check shown as not checked. None:
    # refuse where the environment requires approval, warn elsewhere.
    unchecked: Literal["refuse", "warn"] | None = None
    # The vulnerability gate (Trivy Operator's VulnerabilityReports); None: off.
    vulnerabilities: VulnerabilityLimits | None = None


class EnvironmentConfig(_Model):
    name: str = ""
    namespace: str
    kube_context: str | None = None
    requires_approval: bool = False
    approval: ApprovalPolicy = ApprovalPolicy()
    channels: list[str] = []  # empty: any channel may target this environment
    deploy: EnvironmentDeployConfig = EnvironmentDeployConfig()
    metrics: MetricsQueries | None = None  # golden-signal queries replacing the global ones
    checklist: ChecklistConfig | None = None  # pre/post-change checklists (docs/approvals.md)

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: list[str]) -> list[str]:
        return _channel_ids(value, what="environments.<env>.channels")

    @property
    def refuses_unchecked(self) -> bool:
        """Whether a deploy here is refused when a check it wants cannot run."""
        policy = self.deploy.unchecked
        return self.requires_approval if policy is None else policy == "refuse"


class RegistryConfig(_Model):
    """How to reach one image registry (a key of `registries`: the host[:port] in image
    references) for the deploy pre-check's manifest lookup."""

    url: str | None = None  # the endpoint, http(s); None: https://<host>
    # Credentials: a docker config.json (`auths`), or a kubernetes.io/dockerconfigjson Secret
    # in the environment's namespace (its name); neither: anonymous (a registry's token service
    # still gives anonymous pull tokens).
    credentials_file: str | None = None
    credentials_secret: str | None = None
    ca_file: str | None = None  # a CA bundle to trust for this registry's TLS
    insecure: bool = False  # skip TLS verification (a lab registry with a self-made cert)
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)

    @model_validator(mode="after")
    def _valid(self) -> RegistryConfig:
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError("a registry url must be an http(s) URL")
        if self.credentials_file and self.credentials_secret:
            raise ValueError("a registry takes credentials_file or credentials_secret, not both")
        if self.credentials_secret is not None and not is_dns1123_subdomain(
                self.credentials_secret):
            raise ValueError(f"credentials_secret `{self.credentials_secret}` is not a Secret "
                             "name")
        return self


_REGISTRY_HOST = re.compile(r"[a-zA-Z0-9]([a-zA-Z0-9.-]*[a-zA-Z0-9])?(:[0-9]{1,5})?", re.ASCII)


class RoleConfig(_Model):
    """Who holds the role (users, user groups) and what it grants (runbooks × environments)."""

    users: list[str] = []
    groups: list[str] = []
    runbooks: list[str] = ["*"]
    environments: list[str] = ["*"]
    break_glass: bool = False  # may run approval-guarded runbooks at once with --emergency
    # Slack channels the role holds in (e.g. deployer only in #deploys); empty: every channel.
    # The console is an operator's own terminal and is not channel-restricted.
    channels: list[str] = []

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: list[str]) -> list[str]:
        return _channel_ids(value, what="roles.<role>.channels")


class GroupConfig(_Model):
    id: str
    members: list[str] | None = None  # static members, used when Slack cannot be asked


class Directory(_Model):
    """Names for the console and fallbacks: Slack user ids by handle, user groups by handle."""

    users: dict[str, str] = {}  # user id -> handle
    groups: dict[str, GroupConfig] = {}  # handle -> group


class SlackConfig(_Model):
    command: str = "/ops"
    bot_token: SecretStr | None = None
    signing_secret: SecretStr | None = None
    app_token: SecretStr | None = None
    api_url: str = "https://slack.com/api/"
    usergroup_cache_seconds: int = Field(default=300, ge=0, le=86400)


class AlertsConfig(_Model):
    """Alert-driven remediation: where alert groups are posted and the global guardrails."""

    channel: str | None = None  # Slack channel for alert-group messages
    max_concurrent: int = Field(default=3, ge=1)  # automatic executions at once, all runbooks
    breaker_failures: int = Field(default=3, ge=1)  # consecutive failed remediations per target
    modes: dict[str, Literal["active", "shadow"]] = {}  # per runbook, overriding its `mode`
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    basic_auth_username: str = "alertmanager"  # with the token as password, for basic auth
    # Buttons on alert messages; each must be a `--for` the silence runbook accepts (1m to 7d).
    silence_durations: list[str] = ["1h", "4h", "1d"]
    # Link to a Grafana dashboard; {namespace}, {app}, {pod}, {alertname} are filled in (quoted).
    grafana_url: str | None = None
    # How often stored notifications are checked.
    poll_seconds: float = Field(default=5.0, gt=0, le=300)

    @field_validator("silence_durations")
    @classmethod
    def _durations(cls, value: list[str]) -> list[str]:
        for text in value:
            _duration(text, what="alerts.silence_durations")
        return value


class ReplicasConfig(_Model):
    """Several replicas on one PostgreSQL: leader election on a Kubernetes Lease (as
    client-go's leaderelection), heartbeats, and how long a stopping process lets work finish.

    `leader_election` None (the default) elects on PostgreSQL and lets a process on SQLite
    (one process's database) lead by itself; true or false force it on or off (off: this
    process is the leader, for one replica on PostgreSQL outside Kubernetes)."""

    leader_election: bool | None = None
    lease_name: str = "opsbot"
    lease_namespace: str | None = None  # None: the pod's namespace, else `default`
    lease_duration_seconds: float = Field(default=15.0, gt=0, le=3600)
    renew_deadline_seconds: float = Field(default=10.0, gt=0, le=3600)
    retry_period_seconds: float = Field(default=2.0, gt=0, le=600)
    heartbeat_seconds: float = Field(default=10.0, gt=0, le=600)
    shutdown_grace_seconds: float = Field(default=20.0, ge=0, le=3600)

    @model_validator(mode="after")
    def _valid(self) -> ReplicasConfig:
        if not is_dns1123_label(self.lease_name):
            raise ValueError(f"replicas.lease_name `{self.lease_name}` is not a valid name")
        if self.lease_namespace is not None and not is_dns1123_label(self.lease_namespace):
            raise ValueError(f"replicas.lease_namespace `{self.lease_namespace}` is not a valid "
                             "namespace")
        if not self.retry_period_seconds < self.renew_deadline_seconds \
                < self.lease_duration_seconds:
            raise ValueError("replicas: retry_period_seconds < renew_deadline_seconds < "
                             "lease_duration_seconds, as in client-go's leader election")
        return self

    @property
    def stale_after_seconds(self) -> float:
        """A replica whose heartbeat is older than this is gone (three missed beats)."""
        return self.heartbeat_seconds * 4


class BackupConfig(_Model):
    """Velero backups (`backup ...` commands): where Velero runs and the defaults it is given."""

    namespace: str = "velero"  # where Velero runs: Backups, Restores and Schedules are made there
    storage_location: str = "default"  # the BackupStorageLocation backups are written to
    default_ttl: str = "720h"  # how long a backup is kept, when `--ttl` is not given
    verify_cron: str | None = None  # the scheduled test-restore of the latest backups; None: off
    report_channel: str | None = None  # where failed scheduled verifications are posted

    @model_validator(mode="after")
    def _valid(self) -> BackupConfig:
        if not is_dns1123_label(self.namespace):
            raise ValueError(f"backup.namespace `{self.namespace}` is not a valid namespace")
        if self.verify_cron is not None and not self.verify_cron.isascii():
            # APScheduler reads any script's digits; a cron is written with 0-9.
            raise ValueError(f"backup.verify_cron `{self.verify_cron}`: use the digits 0-9")
        if self.verify_cron is not None:
            from apscheduler.triggers.cron import CronTrigger

            try:
                CronTrigger.from_crontab(self.verify_cron)
            except ValueError as exc:
                raise ValueError(f"backup.verify_cron `{self.verify_cron}`: {exc}") from None
        _duration(self.default_ttl, what="backup.default_ttl", shortest=BACKUP_TTL_SHORTEST)
        return self


# Generic runbook steps (issue 14 item 8) -----------------------------------------------------

_HOST = re.compile(r"(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")


class HttpConfig(_Model):
    """Where `http.request` steps may send requests, and how long and how much they may read."""

    # Host names (`api.example.com`, `127.0.0.1`), or `*.example.com` for its subdomains; a
    # request to any other host, or a redirect to one, is refused. Empty: http.request is off.
    allowed_hosts: list[str] = []
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    max_response_bytes: int = Field(default=1_048_576, ge=1024, le=16_777_216)

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        for host in value:
            if host != host.lower() or not _HOST.fullmatch(host):
                raise ValueError(f"http.allowed_hosts: `{host}` is not a lowercase host name "
                                 "(or `*.domain`); no scheme, port or path")
        return value

    def allows(self, host: str) -> bool:
        """Whether `host` (as a URL gives it) is on the allowlist."""
        host = host.lower().rstrip(".")
        for allowed in self.allowed_hosts:
            if allowed.startswith("*."):
                if host.endswith(allowed[1:]) and len(host) > len(allowed) - 1:
                    return True
            elif host == allowed:
                return True
        return False


@dataclass(frozen=True)
class PatchableKind:
    """Where a kind `k8s.patch` may change lives in the API; `custom`: a custom resource, which
    the API server patches with merge or JSON patches only (no strategic merge)."""

    group: str
    version: str
    plural: str
    custom: bool = False


# The kinds `k8s.patch` knows; `k8s_patch.kinds` says which of them it may change. Secrets,
# RBAC and anything cluster-scoped are not here on purpose.
PATCHABLE_KINDS: dict[str, PatchableKind] = {
    "Deployment": PatchableKind("apps", "v1", "deployments"),
    "StatefulSet": PatchableKind("apps", "v1", "statefulsets"),
    "DaemonSet": PatchableKind("apps", "v1", "daemonsets"),
    "ConfigMap": PatchableKind("", "v1", "configmaps"),
    "Service": PatchableKind("", "v1", "services"),
    "Ingress": PatchableKind("networking.k8s.io", "v1", "ingresses"),
    "CronJob": PatchableKind("batch", "v1", "cronjobs"),
    "HorizontalPodAutoscaler": PatchableKind("autoscaling", "v2", "horizontalpodautoscalers"),
    "Certificate": PatchableKind("cert-manager.io", "v1", "certificates", custom=True),
}


class K8sPatchConfig(_Model):
    """Which kinds `k8s.patch` steps may change (in the environment's namespace only)."""

    kinds: list[str] = ["Deployment", "StatefulSet", "ConfigMap"]

    @field_validator("kinds")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        for kind in value:
            if kind not in PATCHABLE_KINDS:
                raise ValueError(f"k8s_patch.kinds: `{kind}` is not a kind k8s.patch knows "
                                 f"({', '.join(PATCHABLE_KINDS)})")
        return value


class Settings(_Model):
    default_environment: str
    environments: dict[str, EnvironmentConfig]
    apps: dict[str, AppConfig] = {}
    roles: dict[str, RoleConfig] = {}
    directory: Directory = Directory()
    slack: SlackConfig = SlackConfig()
    runbook_dirs: list[str] = []
    break_glass_channel: str | None = None  # Slack channel told loudly of every --emergency
    break_glass_reminder_minutes: int = Field(default=15, ge=1, le=1440)
    database_url: str | None = None
    listen: str = "0.0.0.0:3000"
    log_format: Literal["text", "json"] = "text"
    kubeconfig: str | None = None
    prometheus_url: str | None = None
    alertmanager_url: str | None = None
    alertmanager_token: SecretStr | None = None
    argocd_url: str | None = None
    argocd_token: SecretStr | None = None
    alerts: AlertsConfig = AlertsConfig()
    backup: BackupConfig = BackupConfig()
    replicas: ReplicasConfig = ReplicasConfig()
    loki: LokiConfig = LokiConfig()
    grafana: GrafanaConfig = GrafanaConfig()
    metrics: MetricsQueries = MetricsQueries()
    http: HttpConfig = HttpConfig()
    k8s_patch: K8sPatchConfig = K8sPatchConfig()
    registries: dict[str, RegistryConfig] = {}  # image registry host[:port] -> how to reach it
    base_dir: str = "."  # directory of the config file; relative paths resolve against it

    @model_validator(mode="before")
    @classmethod
    def _names_from_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in ("environments", "apps"):
                section = data.get(key)
                if isinstance(section, dict):
                    data[key] = {
                        name: {**value, "name": name} if isinstance(value, dict) else value
                        for name, value in section.items()
                    }
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if not self.environments:
            raise ValueError("at least one environment is required")
        for env in self.environments.values():
            if not is_dns1123_label(env.namespace):
                raise ValueError(f"`{env.namespace}` is not a valid namespace")
        if self.default_environment not in self.environments:
            raise ValueError(f"default_environment `{self.default_environment}` is not defined")
        if self.environments[self.default_environment].requires_approval:
            # A command without --env must never land in production by accident.
            raise ValueError(
                f"default_environment `{self.default_environment}` requires approval; "
                "production is never implied: make a non-production environment the default"
            )
        for app in self.apps.values():
            if not is_dns1123_label(app.name):
                raise ValueError(f"`{app.name}` is not a valid app name")
            if app.workload and not is_dns1123_subdomain(app.workload):
                raise ValueError(f"app `{app.name}`: workload `{app.workload}` is not a valid "
                                 "Kubernetes name")
            for env_name in app.environments or []:
                if env_name not in self.environments:
                    raise ValueError(f"app `{app.name}` names unknown environment `{env_name}`")
            if app.dashboard is not None:
                _dashboard_uid(app.dashboard, what=f"apps.{app.name}.dashboard")
            if app.log_labels is not None:
                _log_labels(app.log_labels, what=f"apps.{app.name}.log_labels")
        for host in self.registries:
            if not _REGISTRY_HOST.fullmatch(host):
                raise ValueError(f"registries: `{host}` is not a registry host[:port]")
        return self

    def metrics_for(self, app: AppConfig, environment: EnvironmentConfig) -> MetricsQueries:
        """The golden-signal queries of `app` in `environment`: the app's, else the
        environment's, else the global ones (each set whole, so a query never mixes sources)."""
        return app.metrics or environment.metrics or self.metrics

    def dashboard_for(self, app: AppConfig | None) -> str | None:
        """The Grafana dashboard uid of `app` (the default one when it names none); None when
        Grafana or a dashboard is not configured."""
        if not self.grafana.url:
            return None
        return (app.dashboard if app and app.dashboard else None) or self.grafana.dashboard

    def environment(self, name: str | None) -> EnvironmentConfig:
        """The named environment, or the default one; unknown names get suggestions."""
        key = name or self.default_environment
        if key not in self.environments:
            raise UnknownName("environment", key, closest(key, self.environments))
        return self.environments[key]

    def app(self, name: str, environment: str) -> AppConfig:
        """The named app as deployed in `environment`; an app deployed elsewhere says where,
        unknown names get suggestions."""
        check_dns1123_label(name, what="app name")
        apps = self.apps_in(environment)
        if name in apps:
            return apps[name]
        if name in self.apps:
            elsewhere = [env for env in self.environments if name in self.apps_in(env)]
            raise UsageError(messages.app_not_in_environment(name, environment, elsewhere),
                             hint=messages.app_not_in_environment_hint(elsewhere))
        raise UnknownName("app", name, closest(name, apps))

    def apps_in(self, environment: str) -> dict[str, AppConfig]:
        return {
            name: app
            for name, app in self.apps.items()
            if app.environments is None or environment in app.environments
        }

    def resolve_path(self, path: str) -> Path:
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else Path(self.base_dir) / candidate

    def secret_values(self) -> list[str]:
        """Every secret this configuration holds (tokens, signing secret, the database URL's
        password), for masking in logs."""
        found = [secret.get_secret_value() for secret in (
            self.slack.bot_token, self.slack.signing_secret, self.slack.app_token,
            self.alertmanager_token, self.argocd_token) if secret is not None]
        if self.database_url:
            password = urlsplit(self.database_url).password
            if password:
                found += [password, quote(password, safe="")]
        return found

    def user_id(self, name: str) -> str:
        """A Slack user id from a handle or id (console users type `alice`)."""
        for user_id, handle in self.directory.users.items():
            if name in (user_id, handle):
                return user_id
        # Slack ids are ASCII: "U٣" is alphanumeric and upper case to Python, not an id.
        if name.startswith(("U", "W")) and name.isascii() and name.isalnum() and name.isupper():
            return name
        raise UnknownName("user", name, closest(name, self.directory.users.values()))

    def handle(self, user_id: str) -> str:
        return self.directory.users.get(user_id, user_id)


def load_settings(
    path: str | Path | None = None, *, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read the config file (`OPSBOT_CONFIG` when no path is given), then apply variables."""
    environ = os.environ if environ is None else environ
    path = path or environ.get("OPSBOT_CONFIG")
    if not path:
        raise ConfigError("no configuration: set OPSBOT_CONFIG to the path of opsbot.yaml")
    file = Path(path)
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read configuration {file}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"configuration {file} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"configuration {file} must be a mapping")
    raw.setdefault("base_dir", str(file.resolve().parent))
    return settings_from_mapping(raw, environ=environ, source=str(file))


def settings_from_mapping(
    raw: Mapping[str, Any], *, environ: Mapping[str, str] | None = None, source: str = "config"
) -> Settings:
    data: dict[str, Any] = {key: value for key, value in raw.items()}
    for var, dotted in ENV_VARS.items():
        value = (environ or {}).get(var)
        if value:
            _set_dotted(data, dotted, _env_value(var, value))
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration {source}: {problems}") from exc


_NUMBER_VARS = frozenset({"OPSBOT_LEASE_DURATION", "OPSBOT_LEASE_RENEW_DEADLINE",
                          "OPSBOT_LEASE_RETRY_PERIOD", "OPSBOT_HEARTBEAT_SECONDS",
                          "OPSBOT_SHUTDOWN_GRACE"})
_BOOLEANS = {"true": True, "on": True, "1": True, "false": False, "off": False, "0": False}


def _env_value(var: str, value: str) -> object:
    """A variable's text as the setting's type: seconds are ASCII decimal numbers, switches
    true/false (on/off, 1/0)."""
    if var == "OPSBOT_LEADER_ELECTION":
        if value.strip().lower() not in _BOOLEANS:
            raise ConfigError(f"{var} must be true or false, not {value!r}")
        return _BOOLEANS[value.strip().lower()]
    if var in _NUMBER_VARS:
        text = value.strip()
        whole, _, fraction = text.partition(".")
        if not (whole.isascii() and whole.isdigit() and (not fraction or (
                fraction.isascii() and fraction.isdigit()))):
            raise ConfigError(f"{var} must be a number of seconds, not {value!r}")
        return float(text)
    return value


def _set_dotted(data: dict[str, Any], dotted: str, value: object) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        child = node.get(part)
        node[part] = dict(child) if isinstance(child, dict) else {}
        node = node[part]
    node[leaf] = value

