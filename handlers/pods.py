"""Single pods of an app: whether a pod belongs to the app's workload, what keeps it from
running or being ready (status, conditions, events), and `k8s.delete_pod`, which deletes one
stuck pod so its controller recreates it, never the last ready one."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import Field, field_validator

from bot.errors import NotFound, Refused
from bot.kube import client
from bot.names import check_dns1123_subdomain, is_dns1123_subdomain
from bot.registry import HandlerContext, Params, Result, handler
from handlers.workload import Workload, read_workload, selector_string

__all__ = [
    "DeletePodParams",
    "Ownership",
    "app_pods",
    "container_status",
    "delete_pod",
    "event_time",
    "is_ready",
    "owner_of",
    "pod_condition",
    "pod_events",
    "pod_problem",
    "read_pod",
    "ready_since",
    "waiting_cause",
]

# Waiting reasons a new pod would hit again: deleting the pod cannot help.
RECREATE_WONT_HELP = frozenset({
    "ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull",
    "CreateContainerConfigError", "CrashLoopBackOff",
})


def is_ready(pod: Any) -> bool:
    cond = pod_condition(pod, "Ready")
    return cond is not None and cond.status == "True"


def pod_condition(pod: Any, kind: str) -> Any | None:
    for cond in (pod.status.conditions or []) if pod.status else []:
        if cond.type == kind:
            return cond
    return None


def ready_since(pod: Any) -> datetime | None:
    """When the pod's Ready condition last changed (became ready or stopped being ready)."""
    cond = pod_condition(pod, "Ready")
    return cond.last_transition_time if cond is not None else None


def container_status(pod: Any, container: str | None) -> Any | None:
    """The status of `container` in `pod` (the first one when None)."""
    statuses = (pod.status.container_statuses or []) if pod.status else []
    for status in statuses:
        if container is None or status.name == container:
            return status
    return None


def event_time(event: Any) -> datetime:
    return (event.last_timestamp or event.event_time or event.first_timestamp
            or datetime.min.replace(tzinfo=UTC))


async def pod_events(ctx: HandlerContext, pod: str, *, limit: int = 20) -> list[Any]:
    """Events about the pod, newest first."""
    check_dns1123_subdomain(pod, what="pod name")
    listed = await ctx.kube.call(
        ctx.kube.core.list_namespaced_event, ctx.namespace,
        field_selector=f"involvedObject.kind=Pod,involvedObject.name={pod}")
    return sorted(listed.items, key=event_time, reverse=True)[:limit]


def waiting_cause(reason: str, message: str, events: Sequence[Any] = ()) -> str:
    """The likely cause of a container waiting for `reason`, in words an on-call reads."""
    text = " ".join([message, *(e.message or "" for e in events if e.type == "Warning")])
    lowered = text.lower()
    if reason in ("ImagePullBackOff", "ErrImagePull"):
        if any(k in lowered for k in ("not found", "manifest unknown", "does not exist")):
            return "the image tag does not exist in the registry (a typo or an unpushed build)"
        if any(k in lowered for k in ("unauthorized", "authentication required", "denied",
                                      "403", "401")):
            return "the registry refuses access: check the pod's imagePullSecrets"
        if any(k in lowered for k in ("no such host", "i/o timeout", "dial tcp",
                                      "connection refused")):
            return "the registry cannot be reached from the node"
        return "the image cannot be pulled"
    if reason == "InvalidImageName":
        return "the image reference is not valid"
    if reason == "CreateContainerConfigError":
        found = re.search(r'(secret|configmap) "([^"]+)" not found', text, re.IGNORECASE)
        if found:
            kind = "Secret" if found.group(1).lower() == "secret" else "ConfigMap"
            return f"{kind} {found.group(2)} that the pod needs does not exist"
        found = re.search(r"couldn't find key (\S+) in (Secret|ConfigMap) (?:[\w.-]+/)?([\w.-]+)",
                          text, re.IGNORECASE)
        if found:
            return f"key {found.group(1)} is missing from {found.group(2)} {found.group(3)}"
        return f"the container's configuration is invalid: {message or 'see events'}"
    if reason == "CreateContainerError":
        return f"the container runtime cannot create the container: {message or 'see events'}"
    if reason == "RunContainerError":
        return f"the container fails to start: {message or 'see events'}"
    if reason == "CrashLoopBackOff":
        return "the container keeps crashing (see the crash-loop diagnosis)"
    if reason in ("ContainerCreating", "PodInitializing"):
        if "failedmount" in lowered or "mountvolume" in lowered or "unable to attach" in lowered:
            return "a volume cannot be mounted"
        if "sandbox" in lowered:
            return "the pod sandbox (network) cannot be created"
        return "the pod is still being set up (volumes, network, init containers)"
    return f"waiting: {reason}" + (f" ({message})" if message else "")


def pod_problem(pod: Any, events: Sequence[Any] = ()) -> str:
    """One line on what keeps the pod from being ready; "ready" when nothing does."""
    scheduled = pod_condition(pod, "PodScheduled")
    if scheduled is not None and scheduled.status == "False":
        return f"cannot be scheduled: {scheduled.message or scheduled.reason or 'no node fits'}"
    for status in (pod.status.container_statuses or []) if pod.status else []:
        waiting = status.state.waiting if status.state else None
        if waiting is not None and waiting.reason not in (None, "ContainerCreating"):
            return f"{status.name} waiting ({waiting.reason}): " + waiting_cause(
                waiting.reason, waiting.message or "", events)
    if is_ready(pod):
        return "ready"
    probes = [e for e in events if e.reason == "Unhealthy" and "Readiness probe failed"
              in (e.message or "")]
    if probes:
        count = sum(int(e.count or 1) for e in probes)
        return f"readiness probe failing ({count}x): {probes[0].message}"
    phase = pod.status.phase if pod.status else None
    if phase == "Pending":
        return "pending: " + waiting_cause("ContainerCreating", "", events)
    return "running but not ready"


async def app_pods(ctx: HandlerContext, workload: Workload) -> list[Any]:
    """The workload's pods (by its selector), sorted by name."""
    listed = await ctx.kube.call(ctx.kube.core.list_namespaced_pod, workload.namespace,
                                 label_selector=selector_string(workload))
    return sorted(listed.items, key=lambda p: p.metadata.name)


async def read_pod(ctx: HandlerContext, name: str) -> Any | None:
    """The pod named `name` in the environment's namespace, or None when it is gone."""
    check_dns1123_subdomain(name, what="pod name")
    try:
        return await ctx.kube.call(ctx.kube.core.read_namespaced_pod, name, ctx.namespace)
    except NotFound:
        return None


@dataclass(frozen=True)
class Ownership:
    """How a pod relates to the app's workload: `owner` names its controller (None: a bare pod
    nobody recreates); `belongs` only when the controller chain leads to the workload."""

    belongs: bool
    owner: str | None  # "ReplicaSet shop-api-7d9c8b6f4d" / "StatefulSet shop-db"
    replica_set: Any | None = None  # the pod's ReplicaSet (Deployments)
    why: str = ""


async def owner_of(ctx: HandlerContext, pod: Any, workload: Workload) -> Ownership:
    """Whether `pod` is one of the workload's: labels matching its selector and a controller
    ownerReference chain (pod → ReplicaSet → Deployment, or pod → StatefulSet) ending at it."""
    ref = next((r for r in pod.metadata.owner_references or [] if r.controller), None)
    if ref is None:
        return Ownership(False, None, why="it has no controller, so nothing would recreate it")
    owner = f"{ref.kind} {ref.name}"
    selector = workload.obj.spec.selector.match_labels or {}
    labels = pod.metadata.labels or {}
    if any(labels.get(k) != v for k, v in selector.items()):
        return Ownership(False, owner, why=f"its labels do not match {workload.name}'s selector")
    uid = workload.obj.metadata.uid
    if workload.kind == "StatefulSet":
        ok = ref.kind == "StatefulSet" and ref.uid == uid
        return Ownership(ok, owner, why="" if ok else f"it is not controlled by {workload.name}")
    if ref.kind != "ReplicaSet":
        return Ownership(False, owner, why=f"it is controlled by a {ref.kind}, not a ReplicaSet")
    try:
        rs = await ctx.kube.call(ctx.kube.apps.read_namespaced_replica_set, ref.name,
                                 workload.namespace)
    except NotFound:
        return Ownership(False, owner, why=f"its ReplicaSet {ref.name} is gone")
    ok = any(r.uid == uid and r.controller for r in rs.metadata.owner_references or [])
    why = "" if ok else f"its ReplicaSet {ref.name} is not controlled by {workload.name}"
    return Ownership(ok, owner, rs, why)


class DeletePodParams(Params):
    pod: str
    min_ready: int = Field(default=2, ge=1)  # the app must have this many ready pods first
    grace_period_seconds: int | None = Field(default=None, ge=0)
    wait_seconds: float = Field(default=60, ge=0)  # for the controller's replacement

    @field_validator("pod")
    @classmethod
    def _pod_name(cls, value: str) -> str:
        if not is_dns1123_subdomain(value):
            raise ValueError("not a valid pod name")
        return value


@handler("k8s.delete_pod", params=DeletePodParams, mutating=True)
async def delete_pod(*, ctx: HandlerContext, params: DeletePodParams, **_: object) -> Result:
    """Delete one pod of the app so its controller recreates it; never the last ready one."""
    app = ctx.require_app()
    workload = await read_workload(ctx)
    pod = await read_pod(ctx, params.pod)
    if pod is None:
        raise NotFound(f"pod {params.pod} does not exist in {ctx.namespace}")
    ownership = await owner_of(ctx, pod, workload)
    if not ownership.belongs:
        raise Refused(f"pod {params.pod} is not one of {app.name}'s pods to delete: "
                      f"{ownership.why}")
    if pod.metadata.deletion_timestamp is not None:
        return Result(summary=f"pod {params.pod} is already terminating; nothing to do",
                      data={"deleted": False})
    pods = await app_pods(ctx, workload)
    ready = [p.metadata.name for p in pods if is_ready(p) and p.metadata.deletion_timestamp is None]
    others = [name for name in ready if name != params.pod]
    if len(ready) < params.min_ready or not others:
        raise Refused(
            f"{app.name} has {len(ready)} ready pod(s) in {ctx.environment.name}; deleting "
            f"{params.pod} needs at least {params.min_ready} ready and never takes the last one")
    fields = (("Pod", params.pod), ("Recreated by", ownership.owner or "?"),
              ("Ready pods", f"{len(ready)} ({len(others)} besides this one)"))
    if ctx.dry_run:
        return Result(
            summary=f"would delete pod {params.pod} of {app.name}; {ownership.owner} creates a "
                    f"replacement while {len(others)} other pod(s) stay ready",
            fields=fields, data={"deleted": False, "pod": params.pod})
    options = client.V1DeleteOptions(
        preconditions=client.V1Preconditions(uid=pod.metadata.uid),
        grace_period_seconds=params.grace_period_seconds,
    )
    await ctx.kube.call(ctx.kube.core.delete_namespaced_pod, params.pod, ctx.namespace,
                        body=options)
    ctx.log.info("deleted pod %s/%s of %s", ctx.namespace, params.pod, app.name)
    replacement = await _replacement(ctx, workload, {p.metadata.uid for p in pods},
                                     params.wait_seconds)
    summary = f"deleted pod {params.pod} of {app.name}"
    if replacement is not None:
        state = "ready" if is_ready(replacement) else "not ready yet"
        summary += f"; replacement {replacement.metadata.name} is {state}"
    else:
        summary += "; no replacement seen yet"
    return Result(summary=summary, fields=fields, data={
        "deleted": True, "pod": params.pod,
        "replacement": replacement.metadata.name if replacement is not None else None})


async def _replacement(ctx: HandlerContext, workload: Workload, known: set[str],
                       wait_seconds: float) -> Any | None:
    """The first new pod of the workload, waiting up to `wait_seconds` for it to be ready."""
    deadline = time.monotonic() + wait_seconds
    found = None
    while True:
        fresh = [p for p in await app_pods(ctx, workload) if p.metadata.uid not in known]
        found = next((p for p in fresh if is_ready(p)), fresh[0] if fresh else None)
        if (found is not None and is_ready(found)) or time.monotonic() >= deadline:
            return found
        await ctx.progress("waiting for the replacement pod")
        await asyncio.sleep(0.5)
