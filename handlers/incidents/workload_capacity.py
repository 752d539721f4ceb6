"""KubeHpaMaxedOut and CPUThrottlingHigh: HPA replicas and metrics against targets, the CFS
throttling ratio from Prometheus, and the check `remediate-scale-throttled` acts on."""

from __future__ import annotations

import math
from typing import Any

from pydantic import field_validator

from bot.config import AppConfig
from bot.errors import NotFound
from bot.kube import client
from bot.names import is_dns1123_subdomain
from bot.registry import HandlerContext, Result, handler
from handlers.incident import ago, diagnosis
from handlers.incidents.workload_common import (
    WorkloadAlertParams,
    check_window,
    container_spec,
    pick_pod,
    prometheus_value,
    resource,
    selector,
)
from handlers.pods import (
    app_pods,
)
from handlers.workload import Workload, read_workload

__all__ = [
    "CapacityParams",
    "cpu_throttling",
    "hpa_maxed_out",
    "scale_up_check",
    "scale_verdict",
]

THROTTLING_ALERT_RATIO = 0.25  # kube-prometheus CPUThrottlingHigh fires above this



class CapacityParams(WorkloadAlertParams):
    hpa: str | None = None
    window: str = "5m"

    @field_validator("hpa")
    @classmethod
    def _hpa(cls, value: str | None) -> str | None:
        if value is not None and not is_dns1123_subdomain(value):
            raise ValueError("not a valid HPA name")
        return value

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        return check_window(value)


async def _hpa_for(ctx: HandlerContext, workload: Workload, name: str | None) -> Any | None:
    """The HPA named `name`, else the one whose scaleTargetRef is the workload; None if none."""
    api = client.AutoscalingV2Api(ctx.kube.api_client)
    if name:
        try:
            return await ctx.kube.call(api.read_namespaced_horizontal_pod_autoscaler, name,
                                       ctx.namespace)
        except NotFound:
            return None
    try:
        listed = await ctx.kube.call(api.list_namespaced_horizontal_pod_autoscaler,
                                     ctx.namespace)
    except NotFound:  # the API server serves no autoscaling/v2
        return None
    for hpa in listed.items:
        ref = hpa.spec.scale_target_ref
        if ref.kind == workload.kind and ref.name == workload.name:
            return hpa
    return None


def _hpa_condition(hpa: Any, kind: str) -> Any | None:
    for cond in (hpa.status.conditions or []) if hpa.status else []:
        if cond.type == kind:
            return cond
    return None


def _metric_lines(hpa: Any) -> list[str]:
    """`cpu: 180% of requests (target 70%)` per metric, current against target."""
    current: dict[str, str] = {}
    for metric in (hpa.status.current_metrics or []) if hpa.status else []:
        source = metric.resource or metric.container_resource
        if source is not None and source.current is not None:
            now = source.current
            current[source.name] = (f"{now.average_utilization}%" if now.average_utilization
                                    is not None else str(now.average_value or now.value))
    lines = []
    for metric in hpa.spec.metrics or []:
        source = metric.resource or metric.container_resource
        if source is None:
            lines.append(f"{metric.type} metric (not read here)")
            continue
        target = source.target
        goal = (f"{target.average_utilization}%" if target.average_utilization is not None
                else str(target.average_value or target.value))
        now = current.get(source.name)
        unit = " of requests" if target.average_utilization is not None else ""
        lines.append(f"{source.name}: {now}{unit} (target {goal})" if now is not None
                     else f"{source.name}: unknown (target {goal}{unit})")
    return lines


@handler("incident.hpa_maxed_out", params=CapacityParams)
async def hpa_maxed_out(*, ctx: HandlerContext, params: CapacityParams, **_: object) -> Result:
    """KubeHpaMaxedOut: current/desired/max replicas, metrics against targets, since when."""
    app = ctx.require_app()
    workload = await read_workload(ctx)
    hpa = await _hpa_for(ctx, workload, params.hpa)
    if hpa is None:
        return diagnosis(what=f"no HorizontalPodAutoscaler scales {workload.name}",
                         cause="it was deleted, or the alert names another one",
                         alert=params.alert, data={"maxed": False})
    status = hpa.status
    current = int(status.current_replicas or 0) if status else 0
    desired = int(status.desired_replicas or 0) if status else 0
    low, high = int(hpa.spec.min_replicas or 1), int(hpa.spec.max_replicas)
    limited = _hpa_condition(hpa, "ScalingLimited")
    active = _hpa_condition(hpa, "ScalingActive")
    maxed = current >= high
    metrics = _metric_lines(hpa)
    ratio = _cpu_ratio(hpa)
    wanted = math.ceil(current * ratio) if ratio and maxed else None
    since = (limited.last_transition_time if limited is not None and limited.status == "True"
             else None)
    evidence = [
        ("HPA", f"{hpa.metadata.name} → {hpa.spec.scale_target_ref.kind} "
                f"{hpa.spec.scale_target_ref.name}"),
        ("Replicas", f"{current} current · {desired} desired · {low}..{high} allowed"),
        ("Metrics", "; ".join(metrics) or "none"),
        ("App bounds", f"{app.replicas.min}..{app.replicas.max} in opsbot's configuration"),
    ]
    if active is not None:
        evidence.append(("Scaling active", f"{active.status} ({active.reason}): "
                                           f"{active.message}"))
    if status and status.last_scale_time:
        evidence.append(("Last scaled", ago(status.last_scale_time)))
    if not maxed:
        return diagnosis(
            what=f"HPA {hpa.metadata.name} is below its maximum now ({current} of {high})",
            cause="the load went down, or maxReplicas was raised", alert=params.alert,
            evidence=evidence, data={"maxed": False, "current": current, "max": high})
    if wanted and wanted > high:
        cause = (f"demand needs about {wanted} replicas at the current load but maxReplicas is "
                 f"{high}")
        advice = f"raise maxReplicas to about {wanted}"
    else:
        cause = f"load keeps {hpa.metadata.name} at maxReplicas {high}"
        advice = "raise maxReplicas"
    if wanted and wanted > app.replicas.max:
        advice += (f" (and the app's configured max {app.replicas.max} in opsbot, which "
                   "bounds manual scaling)")
    advice += ("; or make each pod serve more (CPU requests/limits). Scaling by hand above "
               "maxReplicas does not last: the HPA scales back to its maximum")
    evidence.append(("Suggested", advice))
    return diagnosis(
        what=f"HPA {hpa.metadata.name} holds {workload.name} at its maximum: {current} of "
             f"{high} replicas",
        cause=cause, alert=params.alert, since=since, evidence=evidence,
        data={"maxed": True, "current": current, "desired": desired, "max": high,
              "wanted": wanted})


def _cpu_ratio(hpa: Any) -> float | None:
    """Current CPU utilization over its target, when both are known."""
    target = next((m.resource.target.average_utilization for m in hpa.spec.metrics or []
                   if m.resource is not None and m.resource.name == "cpu"
                   and m.resource.target.average_utilization), None)
    now = next((m.resource.current.average_utilization
                for m in (hpa.status.current_metrics or []) if hpa.status
                if m.resource is not None and m.resource.name == "cpu"
                and m.resource.current is not None), None)
    return now / target if target and now is not None else None


def _throttling_query(namespace: str, pod: str, container: str, window: str) -> str:
    sel = selector(namespace=namespace, pod=pod, container=container)
    return (f"sum(increase(container_cpu_cfs_throttled_periods_total{sel}[{window}])) / "
            f"sum(increase(container_cpu_cfs_periods_total{sel}[{window}]))")


@handler("incident.cpu_throttling", params=CapacityParams)
async def cpu_throttling(*, ctx: HandlerContext, params: CapacityParams, **_: object) -> Result:
    """CPUThrottlingHigh: the share of CFS periods throttled, the CPU limit, room to scale."""
    app = ctx.require_app()
    workload = await read_workload(ctx)
    pods = await app_pods(ctx, workload)
    pod, note = pick_pod(pods, params.pod, lambda p: 1)
    container = params.container or app.container
    spec = container_spec(pod, container) if pod is not None else None
    if pod is None or spec is None:
        return diagnosis(what=f"no running pod of {workload.name} to measure",
                         cause="its pods were replaced or scaled away" + (
                             f" ({note})" if note else ""),
                         alert=params.alert, data={"throttled": None})
    container = spec.name
    limit = resource(spec, "limits", "cpu")
    ratio, problem = await prometheus_value(
        ctx, _throttling_query(ctx.namespace, pod.metadata.name, container, params.window))
    replicas, high = workload.desired, app.replicas.max
    hpa = await _hpa_for(ctx, workload, None)
    evidence = [
        ("Pod", f"{pod.metadata.name} ({container})" + (f"; {note}" if note else "")),
        ("CPU", f"limit {limit or 'none'}, request {resource(spec, 'requests', 'cpu') or 'none'}"),
        (f"Throttled ({params.window})", f"{ratio:.0%} of CFS periods" if ratio is not None
         else f"unknown: {problem}"),
        ("Replicas", f"{replicas} (configured {app.replicas.min}..{high})"),
    ]
    if hpa is not None:
        evidence.append(("HPA", f"{hpa.metadata.name} scales {workload.name} "
                                f"{hpa.spec.min_replicas or 1}..{hpa.spec.max_replicas}"))
    scale, scale_why = scale_verdict(app, ctx.environment.name, replicas, hpa, ratio)
    if scale:
        advice = f"Scale +1 ({scale_why}) to spread the load, or raise the CPU limit"
    else:
        advice = f"raise the CPU limit; not Scale +1: {scale_why}"
    evidence.append(("Suggested", advice))
    shown = f" {ratio:.0%} of the time" if ratio is not None else ""
    cause = (f"{container} needs more CPU than its limit {limit}" if limit
             else f"{container} has no CPU limit; throttling comes from the namespace's limits")
    if ratio is not None and ratio < THROTTLING_ALERT_RATIO:
        cause = f"throttling is down to {ratio:.0%}: the load has eased"
    return diagnosis(
        what=f"{container} in pod {pod.metadata.name} is CPU-throttled{shown}",
        cause=cause, alert=params.alert, evidence=evidence,
        data={"throttled": ratio, "pod": pod.metadata.name, "container": container,
              "cpu_limit": limit, "replicas": replicas, "max": high,
              **({"scale_app": app.name} if scale else {})})


def scale_verdict(app: AppConfig, environment: str, replicas: int, hpa: Any | None,
                  ratio: float | None) -> tuple[bool, str]:
    """Whether one more replica is allowed and useful, and why (or why not)."""
    high, target = app.replicas.max, replicas + 1
    active = _hpa_condition(hpa, "ScalingActive") if hpa is not None else None
    if target > high:
        return False, (f"{app.name} already runs {replicas} replicas, the configured max in "
                       f"{environment}")
    if hpa is not None and target > int(hpa.spec.max_replicas):
        return False, (f"HPA {hpa.metadata.name} allows at most {hpa.spec.max_replicas} "
                       "replicas and would scale back; raise its maxReplicas instead")
    if hpa is not None and active is not None and active.status == "True":
        return False, (f"HPA {hpa.metadata.name} manages the replicas and would undo a manual "
                       "scale; tune its target or maxReplicas instead")
    if ratio is not None and ratio < THROTTLING_ALERT_RATIO:
        return False, f"throttling is down to {ratio:.0%}; one more replica is not needed now"
    why = f"{replicas} → {target} replicas, within {app.replicas.min}..{high}"
    return True, why + (f"; still throttled {ratio:.0%}" if ratio is not None else "")


@handler("incident.scale_up_check", params=CapacityParams)
async def scale_up_check(*, ctx: HandlerContext, params: CapacityParams, **_: object) -> Result:
    """Decide whether one more replica is allowed and useful: below the app's configured max,
    no HPA that would undo it, and (for an alert) the throttling still measured."""
    app = ctx.require_app()
    workload = await read_workload(ctx)
    replicas = workload.desired
    target = replicas + 1
    hpa = await _hpa_for(ctx, workload, params.hpa)
    ratio: float | None = None
    unchecked: tuple[str, ...] = ()
    if params.alert:  # the throttling is to be measured again before scaling
        problem: str | None = "the alert names no pod and container"
        if params.pod and params.container:
            ratio, problem = await prometheus_value(ctx, _throttling_query(
                ctx.namespace, params.pod, params.container, params.window))
        if ratio is None:
            unchecked = (f"throttling still high ({problem or 'no value'})",)
    act, why = scale_verdict(app, ctx.environment.name, replicas, hpa, ratio)
    verb = "would scale" if ctx.dry_run else "scaling"
    summary = (f"{verb} {app.name} up by one: {why}" if act
               else f"not scaling {app.name}: {why}")
    if unchecked:
        summary += f"; not checked: {unchecked[0]}"
    return Result(summary=summary, fields=(("Decision", "scale +1" if act else "no action"),
                                           ("Why", why)),
                  data={"act": act, "why": why, "replicas": target if act else replicas,
                        "throttled": ratio},
                  not_checked=unchecked)
