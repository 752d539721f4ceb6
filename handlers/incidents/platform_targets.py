"""`incident.target_down` for TargetDown: which scrape targets of a job are down and since when
(`up` in Prometheus, with each target's last scrape error), and what stands behind them in the
cluster: the Service's endpoints and whether its pods are ready. That separates "nothing ready
to scrape" from "the pods are fine but the scrape fails"."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from pydantic import field_validator

from bot.errors import NotFound
from bot.markup import code
from bot.names import is_dns1123_label
from bot.registry import HandlerContext, Result, handler
from handlers.incident import AlertParams, diagnosis
from handlers.incidents.platform_common import (
    app_of_pod,
    labels_selector,
    optional,
    prometheus_for,
    stamp,
    targets,
    vector,
)

__all__ = ["TargetParams", "target_down"]

_JOB = re.compile(r"[A-Za-z0-9_.:/-]{1,200}\Z")
LOOKBACK = "1h"  # how far back "since when" looks for the last successful scrape


class TargetParams(AlertParams):
    scrape_job: str  # the `job` label of the targets, as Prometheus names the scrape job
    service: str | None = None

    @field_validator("scrape_job")
    @classmethod
    def _job(cls, value: str) -> str:
        if not _JOB.fullmatch(value):
            raise ValueError("a scrape job is letters, digits and _ . : / -")
        return value

    @field_validator("service")
    @classmethod
    def _service(cls, value: str | None) -> str | None:
        if value is not None and not is_dns1123_label(value):
            raise ValueError("service must be a DNS-1123 label")
        return value


@handler("incident.target_down", params=TargetParams)
async def target_down(*, ctx: HandlerContext, params: TargetParams, **_: object) -> Result:
    """Which targets of a scrape job are down, since when, and whether their pods are ready."""
    namespace, job = ctx.namespace, params.scrape_job
    scrape = await _scrape_state(ctx, job)
    service = await _service_state(ctx, params.service) if params.service else None
    down = scrape["down"]
    total = scrape["total"]
    by_ip = service["by_ip"] if service else {}
    for target in down:
        ip = target["instance"].rsplit(":", 1)[0]
        target["pod"] = target["pod"] or by_ip.get(ip)
    what = (f"{len(down)} of {total} targets of job {job} in {namespace} are down"
            if total is not None else f"targets of job {job} in {namespace}: up is unknown")
    cause = _cause(scrape, service)
    evidence = [("Down targets", "; ".join(_target_text(t) for t in down[:10]) or "none")]
    if service:
        evidence.append(("Service", service["text"]))
        evidence.append(("Pods", service["pods_text"]))
    if scrape["problem"]:
        evidence.append(("Prometheus", scrape["problem"]))
    first_down = min((t["since"] for t in down if t["since"]), default=None)
    data: dict[str, Any] = {
        "scrape_job": job, "total": total,
        "down": [{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in t.items()}
                 for t in down],
        "ready_endpoints": service["ready"] if service else None,
    }
    app = ctx.app.name if ctx.app else (service["app"] if service else None)
    if app:
        data["app"] = app
    return diagnosis(what=what, cause=cause, alert=params.alert,
                     since=None if params.alert else first_down, evidence=evidence, data=data)


async def _scrape_state(ctx: HandlerContext, job: str) -> dict[str, Any]:
    state: dict[str, Any] = {"down": [], "total": None, "problem": None, "errors": {}}
    prometheus = prometheus_for(ctx)
    if prometheus is None:
        state["problem"] = "not configured (PROMETHEUS_URL); target health unknown"
        return state
    sel = labels_selector({"job": job, "namespace": ctx.namespace})
    async with prometheus:
        series = await optional(vector(prometheus, f"up{sel}"))
        last_up = await optional(vector(
            prometheus,
            f"max by (instance) (last_over_time(timestamp(up{sel} == 1)[{LOOKBACK}:]))"))
        active = await optional(targets(prometheus))
    if series is None:
        state["problem"] = f"the query for {code('up')} failed; target health unknown"
        return state
    state["total"] = len(series)
    last = {labels.get("instance", ""): value for labels, value in last_up or []}
    for target in active or []:
        labels = target.get("labels") or {}
        if labels.get("job") == job and labels.get("namespace", ctx.namespace) == ctx.namespace:
            state["errors"][labels.get("instance", "")] = target.get("lastError") or ""
    for labels, value in sorted(series, key=lambda s: s[0].get("instance", "")):
        if value != 0:
            continue
        instance = labels.get("instance", "")
        seen = last.get(instance)
        state["down"].append({
            "instance": instance,
            "pod": labels.get("pod"),
            "since": datetime.fromtimestamp(seen, UTC) if seen else None,
            "error": state["errors"].get(instance) or None,
        })
    return state


async def _service_state(ctx: HandlerContext, name: str) -> dict[str, Any]:
    namespace = ctx.namespace
    state: dict[str, Any] = {"exists": False, "selector": None, "ready": 0, "not_ready": 0,
                             "pods": 0, "pods_ready": 0, "by_ip": {}, "app": None,
                             "text": f"{name} does not exist in {namespace}",
                             "pods_text": "none"}
    try:
        service = await ctx.kube.call(ctx.kube.core.read_namespaced_service, name, namespace)
    except NotFound:
        return state
    state["exists"] = True
    selector = service.spec.selector or {}
    state["selector"] = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
    try:
        endpoints = await ctx.kube.call(ctx.kube.core.read_namespaced_endpoints, name, namespace)
        subsets = endpoints.subsets or []
    except NotFound:
        subsets = []
    for subset in subsets:
        for address in subset.addresses or []:
            state["ready"] += 1
            if address.target_ref is not None:
                state["by_ip"][address.ip] = address.target_ref.name
        for address in subset.not_ready_addresses or []:
            state["not_ready"] += 1
            if address.target_ref is not None:
                state["by_ip"][address.ip] = address.target_ref.name
    state["text"] = (f"{name}: {state['ready']} ready endpoints, {state['not_ready']} not ready"
                     + (f" (selector {state['selector']})" if selector else " (no selector)"))
    if selector:
        pods = await ctx.kube.call(ctx.kube.core.list_namespaced_pod, namespace,
                                   label_selector=state["selector"])
        items = [p for p in pods.items if p.status and p.status.phase not in
                 ("Succeeded", "Failed")]
        state["pods"] = len(items)
        state["pods_ready"] = sum(1 for p in items if _ready(p))
        state["pods_text"] = f"{state['pods_ready']}/{state['pods']} ready"
        if items:
            owner, app = await app_of_pod(ctx, items[0])
            state["app"] = app.name if app else None
            if owner:
                state["pods_text"] += f" ({owner})"
    return state


def _ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True"
               for c in (pod.status.conditions or []) if pod.status)


def _cause(scrape: dict[str, Any], service: dict[str, Any] | None) -> str:
    down = scrape["down"]
    if scrape["total"] is not None and not down:
        return "every target answers again; the alert should resolve"
    error = next((t["error"] for t in down if t.get("error")), None)
    if service is not None:
        if not service["exists"]:
            return "the Service no longer exists, but its targets are still being scraped"
        if service["selector"] and service["pods"] == 0:
            return (f"no pods match the Service's selector {service['selector']}: the workload "
                    "is scaled to zero or its labels changed")
        if service["ready"] == 0:
            return (f"no ready endpoints: {service['pods']} pods behind the Service, "
                    f"{service['pods_ready']} ready; the pods are down, not the scrape")
        down_pods = {t["pod"] for t in down if t["pod"]}
        if service["pods_ready"] < service["pods"] and down_pods:
            return (f"{service['pods'] - service['pods_ready']} pods behind the Service are "
                    "not ready, and those are the targets that are down")
        return ("the pods are ready but the scrape fails"
                + (f": {error}" if error else "")
                + "; check the metrics port and path, a NetworkPolicy, or TLS/auth on the "
                  "endpoint")
    if error:
        return f"the scrape fails: {error}"
    if scrape["problem"]:
        return f"unknown: Prometheus {scrape['problem']}"
    return f"the targets do not answer; give {code('service')} to compare with the pods behind them"


def _target_text(target: dict[str, Any]) -> str:
    text = str(target["instance"])
    if target.get("pod"):
        text += f" (pod {target['pod']})"
    text += (f", last up {stamp(target['since'])}" if target.get("since")
             else f", not up in the last {LOOKBACK}")
    if target.get("error"):
        text += f": {str(target['error'])[:160]}"
    return text
