"""KubePodNotReady and KubeContainerWaiting: conditions, container states, readiness probe
failures, waiting reasons mapped to causes, and the check `remediate-restart-stuck-pod`
acts on before deleting one stuck pod."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from bot.names import is_dns1123_subdomain
from bot.registry import HandlerContext, Result, handler
from handlers.incident import AlertParams, ago, diagnosis
from handlers.incidents.workload_common import (
    WorkloadAlertParams,
    container_spec,
    events_text,
    pick_pod,
    revision_of,
)
from handlers.pods import (
    RECREATE_WONT_HELP,
    Ownership,
    app_pods,
    container_status,
    is_ready,
    owner_of,
    pod_condition,
    pod_events,
    pod_problem,
    read_pod,
    ready_since,
    waiting_cause,
)
from handlers.workload import read_workload

__all__ = [
    "StuckPodParams",
    "container_waiting",
    "pod_not_ready",
    "stuck_pod_check",
    "stuck_verdict",
]

STUCK_MIN_READY = 2  # ready pods the app must have before a stuck one is deleted
IMAGE_REASONS = frozenset({"ImagePullBackOff", "ErrImagePull", "InvalidImageName"})


@handler("incident.pod_not_ready", params=WorkloadAlertParams)
async def pod_not_ready(*, ctx: HandlerContext, params: WorkloadAlertParams,
                        **_: object) -> Result:
    """KubePodNotReady: conditions, container states and readiness probe failures of a pod."""
    workload = await read_workload(ctx)
    pods = await app_pods(ctx, workload)
    pod, note = pick_pod(pods, params.pod, lambda p: 0 if is_ready(p) else 1)
    if pod is None or is_ready(pod):
        name = params.pod or f"every pod of {workload.name}"
        return diagnosis(what=f"{name} is ready now", cause="it recovered" + (
            f" ({note})" if note else ""), alert=params.alert, data={"ready": True})
    events = await pod_events(ctx, pod.metadata.name)
    problem = pod_problem(pod, events)
    ownership = await owner_of(ctx, pod, workload)
    ready = _ready_count(pods)
    restart, restart_why = stuck_verdict(pod.metadata.name, pod, ownership, problem, ready,
                                         STUCK_MIN_READY, workload.name)
    conditions = [f"{c.type}={c.status}" + (f" ({c.reason})" if c.reason else "")
                  for c in (pod.status.conditions or []) if pod.status]
    states = []
    for status in (pod.status.container_statuses or []) if pod.status else []:
        state = status.state
        now = ("waiting " + (state.waiting.reason or "") if state and state.waiting else
               "running" if state and state.running else "terminated")
        states.append(f"{status.name}: {now}, ready={status.ready}, "
                      f"restarts={status.restart_count}")
    evidence = [
        ("Pod", pod.metadata.name + (f"; {note}" if note else "")),
        ("Phase", str(pod.status.phase if pod.status else "Unknown")),
        ("Conditions", ", ".join(conditions) or "none"),
        ("Containers", "; ".join(states) or "none started"),
        ("Owner", f"{ownership.owner} (recreated when deleted)" if ownership.belongs
         else f"{ownership.owner or 'none'}: {ownership.why}"),
        ("Ready pods", f"{ready}/{len(pods)} of {workload.name}"),
    ]
    probe = _readiness_probe(container_spec(pod, None))
    if probe:
        evidence.append(("Readiness probe", probe))
    evidence.append(("Deleting the pod", ("may help: " if restart else "no: ") + restart_why))
    data: dict[str, Any] = {"ready": False, "pod": pod.metadata.name, "problem": problem,
                            "owned": ownership.belongs, "ready_pods": ready}
    if restart:
        data["restart_pod"] = pod.metadata.name  # the follow-up button's pod
    return diagnosis(
        what=f"pod {pod.metadata.name} of {workload.name} is not ready",
        cause=problem, alert=params.alert, since=ready_since(pod), evidence=evidence,
        output="\n".join(["EVENTS", *events_text(events)]), data=data)


def _readiness_probe(spec: Any) -> str | None:
    probe = spec.readiness_probe if spec is not None else None
    if probe is None:
        return None
    if probe.http_get is not None:
        how = f"HTTP GET {probe.http_get.path or '/'} on port {probe.http_get.port}"
    elif probe.tcp_socket is not None:
        how = f"TCP port {probe.tcp_socket.port}"
    elif probe._exec is not None:
        how = "exec " + " ".join(probe._exec.command or [])
    else:
        how = "a probe"
    return f"{how} every {probe.period_seconds or 10}s"


@handler("incident.container_waiting", params=WorkloadAlertParams)
async def container_waiting(*, ctx: HandlerContext, params: WorkloadAlertParams,
                            **_: object) -> Result:
    """KubeContainerWaiting: the waiting reason and message, the image, recent events."""
    workload = await read_workload(ctx)
    pods = await app_pods(ctx, workload)

    def waiting(pod: Any) -> int:
        status = container_status(pod, params.container)
        return 1 if status is not None and status.state and status.state.waiting else 0

    pod, note = pick_pod(pods, params.pod, waiting)
    status = container_status(pod, params.container) if pod is not None else None
    state = status.state.waiting if status is not None and status.state else None
    if pod is None or status is None or state is None:
        return diagnosis(what=f"no container of {workload.name} is waiting now",
                         cause="it started, or its pod was replaced" + (
                             f" ({note})" if note else ""),
                         alert=params.alert, data={"waiting": False})
    events = await pod_events(ctx, pod.metadata.name)
    reason, message = state.reason or "Unknown", state.message or ""
    cause = waiting_cause(reason, message, events)
    warnings = [e for e in events if e.type == "Warning"]
    ownership = await owner_of(ctx, pod, workload)
    restart, restart_why = stuck_verdict(pod.metadata.name, pod, ownership, cause,
                                         _ready_count(pods), STUCK_MIN_READY, workload.name)
    revision = await revision_of(ctx, workload, ownership)
    rollback = (reason in IMAGE_REASONS and revision.latest and revision.previous is not None)
    evidence = [
        ("Pod", f"{pod.metadata.name} ({status.name})" + (f"; {note}" if note else "")),
        ("Waiting", reason + (f": {message}" if message else "")),
        ("Image", str(status.image)),
        ("Revision", revision.text),
        ("Recent warning", f"{warnings[0].reason}: {warnings[0].message}" if warnings
         else "none"),
        ("Deleting the pod", ("may help: " if restart else "no: ") + restart_why),
    ]
    if rollback:
        evidence.append(("Suggested", f"Rollback to revision {revision.previous}: revision "
                                      f"{revision.number} runs an image that cannot be pulled"))
    data: dict[str, Any] = {"waiting": True, "pod": pod.metadata.name,
                            "container": status.name, "reason": reason, "image": status.image}
    if rollback:
        data["rollback_app"] = ctx.require_app().name
    if restart:
        data["restart_pod"] = pod.metadata.name
    return diagnosis(
        what=f"{status.name} in pod {pod.metadata.name} is waiting: {reason}",
        cause=cause, alert=params.alert, since=pod.metadata.creation_timestamp,
        evidence=evidence, output="\n".join(["EVENTS", *events_text(events)]), data=data)


class StuckPodParams(AlertParams):
    pod: str
    min_ready: int = Field(default=STUCK_MIN_READY, ge=1)

    @field_validator("pod")
    @classmethod
    def _pod(cls, value: str) -> str:
        if not is_dns1123_subdomain(value):
            raise ValueError("not a valid pod name")
        return value


def stuck_verdict(name: str, pod: Any | None, ownership: Ownership | None, problem: str,
                  ready: int, min_ready: int, app: str) -> tuple[bool, str]:
    """Whether deleting the stuck pod `name` helps and is safe, and why (or why not)."""
    if pod is None:
        return False, f"pod {name} no longer exists"
    if pod.metadata.deletion_timestamp is not None:
        return False, f"pod {name} is already terminating"
    if is_ready(pod):
        return False, f"pod {name} is ready now"
    waiting = {s.state.waiting.reason for s in (pod.status.container_statuses or [])
               if s.state and s.state.waiting} if pod.status else set()
    scheduled = pod_condition(pod, "PodScheduled")
    if ownership is None or not ownership.belongs:
        return False, f"pod {name} is not one of {app}'s: {ownership.why if ownership else '?'}"
    if waiting & RECREATE_WONT_HELP:
        return False, f"a new pod would not do better: {problem}"
    if scheduled is not None and scheduled.status == "False":
        return False, f"a new pod would not be scheduled either: {problem}"
    if ready < min_ready:
        return False, (f"only {ready} pod(s) of {app} are ready; a stuck pod is deleted only "
                       f"while at least {min_ready} are")
    return True, (f"not ready since {ago(ready_since(pod))} ({problem}); {ownership.owner} "
                  f"recreates it and {ready} pod(s) stay ready")


@handler("incident.stuck_pod_check", params=StuckPodParams)
async def stuck_pod_check(*, ctx: HandlerContext, params: StuckPodParams,
                          **_: object) -> Result:
    """Decide whether deleting a stuck pod helps and is safe: it is not ready, a controller of
    the app recreates it, a new pod would not wait the same way, and others stay ready."""
    app = ctx.require_app()
    workload = await read_workload(ctx)
    pod = await read_pod(ctx, params.pod)
    pods = await app_pods(ctx, workload)
    ready = _ready_count(pods)
    ownership, problem = None, ""
    if pod is not None and not is_ready(pod):
        ownership = await owner_of(ctx, pod, workload)
        problem = pod_problem(pod, await pod_events(ctx, params.pod))
    act, why = stuck_verdict(params.pod, pod, ownership, problem, ready, params.min_ready,
                             app.name)
    verb = "would delete" if ctx.dry_run else "deleting"
    summary = f"{verb} pod {params.pod}: {why}" if act else f"not deleting {params.pod}: {why}"
    return Result(summary=summary, fields=(("Decision", "delete" if act else "no action"),
                                           ("Why", why)),
                  data={"act": act, "why": why, "pod": params.pod})


def _ready_count(pods: list[Any]) -> int:
    return sum(1 for p in pods if is_ready(p) and p.metadata.deletion_timestamp is None)


