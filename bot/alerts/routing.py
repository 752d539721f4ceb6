"""From an alert to the runbooks it starts: matchers, the target derived from labels, and the
parameters rendered from the alert.

Label values are data. They reach templates as values (never as template source), become
parameters only through the runbook's typed coercion, and name a target only when they name
something configured: the environment is the one whose namespace the `namespace` label
names, the app one configured in it whose workload the labels name. Anything else is
recorded as "no target" and changes nothing.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from bot.alerts.matchers import Matcher, matches_all, parse_matcher
from bot.alerts.payload import AlertItem
from bot.config import AppConfig, EnvironmentConfig, Settings
from bot.errors import OpsbotError, UsageError
from bot.grafana import dashboard_link
from bot.markup import code
from bot.names import is_dns1123_label, is_dns1123_subdomain
from bot.runbooks.loader import Catalog
from bot.runbooks.models import AlertTrigger, Mode, Runbook
from bot.runbooks.params import coerce_params
from bot.runbooks.templating import render_value

__all__ = ["Route", "alert_context", "environment_for", "route", "subject_of"]

# Labels that name a workload directly (kube-state-metrics, cAdvisor, common conventions).
_WORKLOAD_LABELS = (
    "deployment", "statefulset", "rollout", "horizontalpodautoscaler", "app",
    "app_kubernetes_io_name", "service",
)


@dataclass(frozen=True)
class Route:
    """One runbook an alert matched, with its parameters or why it cannot run."""

    runbook: Runbook
    trigger: AlertTrigger
    environment: EnvironmentConfig | None
    app: AppConfig | None
    params: dict[str, Any] | None  # typed, ready to run; None when `problem` says why not
    problem: str | None
    mode: Mode

    subject: str  # what guardrails count per: the app, else the object the labels name

    @property
    def target(self) -> str | None:
        return self.app.name if self.app else None


# Labels naming the object of an alert without an app (a PVC, a Job, a certificate, ...), so
# cooldowns and limits count per object rather than per environment.
_SUBJECT_LABELS = ("persistentvolumeclaim", "job_name", "cronjob", "ingress", "service", "name",
                   "schedule", "pod", "horizontalpodautoscaler", "deployment", "statefulset",
                   "job", "instance")
_SUBJECT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,190}")


def subject_of(alert: AlertItem, app: AppConfig | None) -> str:
    """The app's name, else `<label>/<value>` of the first object label, else the alert's
    fingerprint; only ever compared and shown, never sent anywhere."""
    if app is not None:
        return app.name
    for key in _SUBJECT_LABELS:
        value = alert.labels.get(key, "")
        if _SUBJECT.fullmatch(value):
            return f"{key}/{value}"
    return f"alert/{alert.fingerprint[:32]}"


def environment_for(labels: Mapping[str, str], settings: Settings) -> EnvironmentConfig | None:
    """The configured environment whose namespace the alert's `namespace` label names."""
    namespace = labels.get("namespace", "")
    if not is_dns1123_label(namespace):
        return None
    found = [env for env in settings.environments.values() if env.namespace == namespace]
    return found[0] if len(found) == 1 else None


def _app_for(labels: Mapping[str, str], settings: Settings,
             environment: EnvironmentConfig | None) -> AppConfig | None:
    if environment is None:
        return None
    return _app_among(labels, list(settings.apps_in(environment.name).values()))


def _app_among(labels: Mapping[str, str], apps: list[AppConfig]) -> AppConfig | None:
    for key in _WORKLOAD_LABELS:
        value = labels.get(key, "")
        for app in apps:
            if value and value == app.workload_name:
                return app
    pod = labels.get("pod", "")
    if is_dns1123_subdomain(pod):
        for app in apps:
            if _pod_of(pod, app):
                return app
    return None


def _pod_of(pod: str, app: AppConfig) -> bool:
    name = re.escape(app.workload_name)
    if app.kind == "StatefulSet":
        return re.fullmatch(rf"{name}-[0-9]+", pod) is not None
    # <deployment>-<pod-template-hash>-<suffix>, as the ReplicaSet controller names pods.
    return re.fullmatch(rf"{name}-[a-z0-9]{{5,10}}-[a-z0-9]{{5}}", pod) is not None


def alert_context(alert: AlertItem, settings: Settings) -> dict[str, Any]:
    """What templates see as `alert` (documented in docs/alerts.md)."""
    labels, notes = dict(alert.labels), dict(alert.annotations)
    environment = environment_for(labels, settings)
    app = _app_for(labels, settings, environment)
    pod = labels.get("pod", "")
    namespace = labels.get("namespace", "")
    return {
        "name": alert.name,
        "status": alert.status,
        "severity": labels.get("severity", ""),
        "labels": labels,
        "annotations": notes,
        "summary": notes.get("summary", ""),
        "description": notes.get("description") or notes.get("message", ""),
        "starts_at": alert.starts_at.isoformat(),
        "fingerprint": alert.fingerprint,
        # Validated names only; None when the label is absent or not a valid name.
        "namespace": namespace if is_dns1123_label(namespace) else None,
        "pod": pod if is_dns1123_subdomain(pod) else None,
        "env": environment.name if environment else None,
        "app": app.name if app else None,
        "links": _links(alert, settings, namespace, app, pod),
    }


def _links(alert: AlertItem, settings: Settings, namespace: str, app: AppConfig | None,
           pod: str) -> dict[str, str | None]:
    def http(url: str) -> str | None:
        return url if url.startswith(("http://", "https://")) else None

    grafana = None
    if settings.alerts.grafana_url:
        grafana = settings.alerts.grafana_url.format(
            namespace=quote(namespace, safe=""), app=quote(app.name if app else "", safe=""),
            pod=quote(pod, safe=""), alertname=quote(alert.name, safe=""),
        )
    elif app is not None and is_dns1123_label(namespace):
        # The app's dashboard (grafana.url), from a little before the alert began until now.
        margin = timedelta(seconds=settings.grafana.margin_seconds)
        grafana = dashboard_link(settings, app, namespace, alert.starts_at - margin, None)
    return {
        "prometheus": http(alert.generator_url),
        "grafana": grafana,
        "runbook": http(alert.annotations.get("runbook_url", "")),
    }


def route(alert: AlertItem, catalog: Catalog, settings: Settings) -> list[Route]:
    """Every runbook whose alert matchers all hold for `alert`, in catalog order."""
    context = alert_context(alert, settings)
    environment = (settings.environments.get(context["env"]) if context["env"] else None)
    app = settings.app(context["app"], environment.name) if environment and context["app"] \
        else None
    routes = []
    for runbook in catalog:
        for trigger in runbook.alerts:
            if not matches_all(_matchers(tuple(trigger.matchers)), alert.labels):
                continue
            mode = settings.alerts.modes.get(runbook.name, runbook.mode)
            params, problem = _params(runbook, trigger, context, settings, environment)
            route_app = app
            if params is not None and params.get("app"):
                route_app = settings.app(params["app"], environment.name) if environment else None
            routes.append(Route(runbook, trigger, environment, route_app, params, problem, mode,
                                subject_of(alert, route_app)))
            break  # one trigger per runbook is enough
    return routes


@functools.lru_cache(maxsize=1024)
def _matchers(texts: tuple[str, ...]) -> tuple[Matcher, ...]:
    """A trigger's matchers, parsed once (they were checked when its runbook loaded)."""
    return tuple(parse_matcher(text) for text in texts)


def _params(runbook: Runbook, trigger: AlertTrigger, context: dict[str, Any], settings: Settings,
            environment: EnvironmentConfig | None) -> tuple[dict[str, Any] | None, str | None]:
    if environment is None:
        namespace = context["labels"].get("namespace", "")
        return None, (f"namespace {code(namespace[:63])} is not a configured environment"
                      if namespace else "the alert has no namespace label")
    raw: dict[str, str] = {}
    try:
        for name, template in trigger.params.items():
            value = render_value(template, {"alert": context})
            if value is None or value == "":
                continue  # not derivable from this alert: the parameter's default applies
            raw[name] = str(value)
        params = coerce_params(runbook, raw, settings=settings, environment=environment.name)
    except OpsbotError as exc:
        why = _elsewhere(context, settings, environment) or str(exc)
        return None, f"no valid target from the alert's labels: {why}"
    return params, None


def _elsewhere(context: dict[str, Any], settings: Settings,
               environment: EnvironmentConfig) -> str | None:
    """Why the labels name no app here when they name one configured for other environments:
    "`shop-worker` is not deployed to prod; it is in staging"."""
    other = None if context["app"] else _app_among(context["labels"], list(settings.apps.values()))
    if other is None:
        return None
    try:
        settings.app(other.name, environment.name)
    except UsageError as exc:
        return str(exc)
    return None
