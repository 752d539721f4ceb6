"""`incident.ingress_5xx` for ingress-nginx 5xx alerts: the share of 5xx for the Ingress and for
each backend service (`nginx_ingress_controller_requests`), the Ingress's backends mapped to
configured apps, their ready endpoints, and whether the failing app changed recently (audit
records and ReplicaSet revision times) so a rollback is worth offering."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import Field, field_validator

from bot.config import AppConfig
from bot.errors import NotFound
from bot.messages import rough_span
from bot.registry import HandlerContext, Result, handler
from handlers.incident import AlertParams, diagnosis, parse_time
from handlers.incidents.platform_common import (
    check_name,
    check_window,
    labels_selector,
    networking_api,
    optional,
    prometheus_for,
    stamp,
    utc,
    vector,
)
from handlers.workload import read_workload

__all__ = ["Ingress5xxParams", "ingress_5xx"]

METRIC = "nginx_ingress_controller_requests"
REVISION = "deployment.kubernetes.io/revision"
QUIET = 0.01  # below this 5xx share the ingress is considered recovered
CODES = {"502": "the backend closed connections or crashed (502 Bad Gateway)",
         "503": "nginx found no ready backend (503 Service Unavailable)",
         "504": "the backend did not answer in time (504 Gateway Timeout)"}


class Ingress5xxParams(AlertParams):
    ingress: str
    window: str = "5m"
    recent_minutes: int = Field(default=120, ge=1, le=7 * 24 * 60)

    _ingress = field_validator("ingress")(lambda v: check_name(v, "ingress"))
    _window = field_validator("window")(check_window)


@handler("incident.ingress_5xx", params=Ingress5xxParams)
async def ingress_5xx(*, ctx: HandlerContext, params: Ingress5xxParams, **_: object) -> Result:
    """5xx of an ingress-nginx Ingress by backend, the apps behind it and their recent changes."""
    namespace, name = ctx.namespace, params.ingress
    try:
        ingress = await ctx.kube.call(networking_api(ctx).read_namespaced_ingress, name,
                                      namespace)
    except NotFound:
        ingress = None
    backends = _backends(ingress) if ingress is not None else []
    services = sorted({b["service"] for b in backends})
    traffic = await _traffic(ctx, name, params.window)
    per_service = traffic["services"]
    for service in per_service:
        if service not in services:
            services.append(service)
    found: dict[str, dict[str, Any]] = {}
    for service in services:
        found[service] = await _backend(ctx, service)
    worst = max(per_service, key=lambda s: per_service[s]["errors"], default=None)
    if worst is None and len(services) == 1:
        worst = services[0]
    app: AppConfig | None = found[worst]["app"] if worst in found else None
    change = await _recent_change(ctx, app) if app else None
    reference = parse_time((params.alert or {}).get("starts_at")) or datetime.now(UTC)
    recent = change is not None and _is_recent(change["time"], reference, params.recent_minutes)
    await ctx.progress("traffic, backends and recent changes read")

    ratio = traffic["ratio"]
    what = (f"Ingress {name} in {namespace}: {ratio:.1%} of requests answer 5xx over "
            f"{params.window}" if ratio is not None else
            f"Ingress {name} in {namespace}: 5xx ratio unknown")
    if ingress is None:
        what += " (the Ingress object is not found)"
    cause = _cause(traffic, worst, found, app, change, recent, params)
    evidence = [
        ("Requests", f"{traffic['rps']:.1f}/s" if traffic["rps"] is not None else "unknown"),
        ("By service", "; ".join(
            f"{s}: {v['ratio']:.1%} 5xx of {v['rps']:.1f}/s" for s, v in
            sorted(per_service.items(), key=lambda i: -i[1]["errors"])) or "no data"),
        ("Status codes", ", ".join(f"{code} {rate:.1f}/s" for code, rate in traffic["codes"])
         or "none"),
        ("Backends", "; ".join(_backend_text(b, found.get(b["service"])) for b in backends)
         or "none found"),
    ]
    if change is not None:
        evidence.append(("Last change", f"{app.name if app else '?'}: {change['text']} "
                                        f"({stamp(change['time'])})"))
    if traffic["problem"]:
        evidence.append(("Prometheus", traffic["problem"]))
    data: dict[str, Any] = {
        "ingress": name, "ratio": ratio, "worst_service": worst,
        "services": {s: dict(v) for s, v in per_service.items()},
        "recent_change": {"time": change["time"].isoformat(), "text": change["text"]}
        if change else None,
    }
    if app is not None:
        data["app"] = app.name  # follow-up buttons (Diagnose) render only when it is set
        if recent and ratio is not None and ratio >= QUIET:
            data["rollback_app"] = app.name  # and Rollback only when a change is recent
    return diagnosis(what=what, cause=cause, alert=params.alert, evidence=evidence, data=data)


def _backends(ingress: Any) -> list[dict[str, Any]]:
    out = []
    spec = ingress.spec
    default = spec.default_backend.service if spec.default_backend else None
    if default is not None:
        out.append({"host": "*", "path": "(default)", "service": default.name,
                    "port": _port(default.port)})
    for rule in spec.rules or []:
        for path in (rule.http.paths if rule.http else []) or []:
            service = path.backend.service if path.backend else None
            if service is not None:
                out.append({"host": rule.host or "*", "path": path.path or "/",
                            "service": service.name, "port": _port(service.port)})
    return out


def _port(port: Any) -> str:
    if port is None:
        return "?"
    return str(port.number if port.number is not None else port.name)


async def _traffic(ctx: HandlerContext, ingress: str, window: str) -> dict[str, Any]:
    out: dict[str, Any] = {"ratio": None, "rps": None, "services": {}, "codes": [],
                           "problem": None}
    prometheus = prometheus_for(ctx)
    if prometheus is None:
        out["problem"] = "not configured (PROMETHEUS_URL); the 5xx ratio is unknown"
        return out
    base = {"namespace": ctx.namespace, "ingress": ingress}
    every = f"rate({METRIC}{labels_selector(base)}[{window}])"
    five = labels_selector(base, extra='status=~"5.."')
    errors = f"rate({METRIC}{five}[{window}])"
    # One query for both rates, so they come from the same instant and the share is exact.
    both = (f'label_replace(sum by (service) ({every}), "part", "all", "", "") or '
            f'label_replace(sum by (service) ({errors}), "part", "5xx", "", "")')
    async with prometheus:
        rates = await optional(vector(prometheus, both))
        codes = await optional(vector(prometheus, f"sum by (status) ({errors})"))
    if rates is None:
        out["problem"] = "the query for nginx_ingress_controller_requests failed"
        return out
    total = [(labels, value) for labels, value in rates if labels.get("part") == "all"]
    bad = {labels.get("service", ""): value for labels, value in rates
           if labels.get("part") == "5xx"}
    for labels, value in total:
        service = labels.get("service", "")
        out["services"][service] = {
            "rps": value, "errors": bad.get(service, 0.0),
            "ratio": bad.get(service, 0.0) / value if value else 0.0,
        }
    all_rps = sum(v["rps"] for v in out["services"].values())
    all_errors = sum(v["errors"] for v in out["services"].values())
    out["rps"] = all_rps if total else None
    out["ratio"] = all_errors / all_rps if all_rps else None
    out["codes"] = sorted(((labels.get("status", "?"), value) for labels, value in codes or []
                           if value > 0), key=lambda c: -c[1])
    if not total:
        out["problem"] = f"no {METRIC} series for this Ingress"
    return out


async def _backend(ctx: HandlerContext, name: str) -> dict[str, Any]:
    """A backend Service: its ready endpoints and the configured app it sends traffic to."""
    found: dict[str, Any] = {"exists": False, "ready": 0, "app": None}
    try:
        service = await ctx.kube.call(ctx.kube.core.read_namespaced_service, name, ctx.namespace)
    except NotFound:
        return found
    found["exists"] = True
    try:
        endpoints = await ctx.kube.call(ctx.kube.core.read_namespaced_endpoints, name,
                                        ctx.namespace)
        found["ready"] = sum(len(s.addresses or []) for s in endpoints.subsets or [])
    except NotFound:
        found["ready"] = 0
    found["app"] = await _app_behind(ctx, name, service.spec.selector or {})
    return found


async def _app_behind(ctx: HandlerContext, service: str,
                      selector: dict[str, str]) -> AppConfig | None:
    """The configured app whose workload is named like the Service, or whose pod template
    the Service's selector selects."""
    apps = list(ctx.settings.apps_in(ctx.environment.name).values())
    for app in apps:
        if app.workload_name == service:
            return app
    if not selector:
        return None
    for app in apps:
        try:
            workload = await read_workload(ctx, app)
        except NotFound:
            continue
        labels = (workload.obj.spec.template.metadata.labels or {}) \
            if workload.obj.spec.template.metadata else {}
        if selector.items() <= labels.items():
            return app
    return None


async def _recent_change(ctx: HandlerContext, app: AppConfig) -> dict[str, Any] | None:
    """The newest change of the app's pods: a deploy or rollback opsbot recorded, or the
    creation of the ReplicaSet behind the current revision (changes made outside opsbot)."""
    changes: list[dict[str, Any]] = []
    records = await ctx.records.audit_records(
        environment=ctx.environment.name, target=app.name, outcomes=("succeeded",), limit=50)
    for record in records:
        details = record.get("details") or {}
        if not isinstance(details, dict) or details.get("dry_run"):
            continue
        if details.get("runbook") in ("deploy", "rollback"):
            moment = parse_time(str(record.get("time", "")))
            if moment is not None:
                who = ctx.settings.handle(str(record.get("actor", "")))
                changes.append({"time": moment, "text": f"{record.get('command')} by {who}"})
                break
    try:
        workload = await read_workload(ctx, app)
    except NotFound:
        workload = None
    if workload is not None and workload.kind == "Deployment" and workload.revision:
        sets = await ctx.kube.call(
            ctx.kube.apps.list_namespaced_replica_set, ctx.namespace,
            label_selector=",".join(f"{k}={v}" for k, v in sorted(
                (workload.obj.spec.selector.match_labels or {}).items())))
        for rs in sets.items:
            if (rs.metadata.annotations or {}).get(REVISION) == workload.revision:
                images = ", ".join(c.image for c in rs.spec.template.spec.containers)
                created = utc(rs.metadata.creation_timestamp)
                if created is not None:
                    changes.append({"time": created, "revision": workload.revision,
                                    "text": f"revision {workload.revision} ({images})"})
    return max(changes, key=lambda c: c["time"]) if changes else None


def _is_recent(moment: datetime, reference: datetime, minutes: int) -> bool:
    return reference - timedelta(minutes=minutes) <= moment <= reference + timedelta(minutes=5)


def _cause(traffic: dict[str, Any], worst: str | None, found: dict[str, dict[str, Any]],
           app: AppConfig | None, change: dict[str, Any] | None, recent: bool,
           params: Ingress5xxParams) -> str:
    ratio = traffic["ratio"]
    if ratio is None:
        return ("no request metrics for this Ingress in Prometheus"
                if not traffic["problem"] else f"unknown: Prometheus {traffic['problem']}")
    if ratio < QUIET:
        return f"the 5xx share is back to {ratio:.2%}; the alert should resolve"
    services = traffic["services"]
    failing = [s for s, v in services.items() if v["ratio"] >= QUIET]
    code = traffic["codes"][0][0] if traffic["codes"] else None
    how = CODES.get(code or "", f"{code} answers" if code else "5xx answers")
    if worst and worst in found and found[worst]["exists"] and found[worst]["ready"] == 0:
        return f"backend {worst} has no ready endpoints, so {how}"
    if worst and worst in found and not found[worst]["exists"]:
        return f"backend Service {worst} does not exist, so {how}"
    if len(services) > 1 and len(failing) == len(services):
        return (f"every backend answers 5xx ({how}): look at the ingress controller or a "
                "dependency they share")
    target = f"backend {worst}" + (f" (app {app.name})" if app else "")
    if recent and change is not None:
        return (f"{target} started failing after a recent change: {change['text']}, "
                f"{stamp(change['time'])}; {how}")
    since = (f"; no change to {app.name} in the last {rough_span(params.recent_minutes * 60)}"
             if app else "")
    return f"{target} answers the errors: {how}{since}"


def _backend_text(backend: dict[str, Any], found: dict[str, Any] | None) -> str:
    text = f"{backend['host']}{backend['path']} -> {backend['service']}:{backend['port']}"
    if found is None:
        return text
    if not found["exists"]:
        return text + " (Service missing)"
    text += f" ({found['ready']} ready endpoints"
    return text + (f", app {found['app'].name})" if found["app"] else ")")
