"""KubeDeploymentReplicasMismatch and KubeDeploymentRolloutStuck: replica counts, conditions,
the new against the old ReplicaSets, and why pods are not ready."""

from __future__ import annotations

from typing import Any

from bot.numbers import is_digits
from bot.registry import HandlerContext, Result, handler
from handlers.deploy.kubernetes import REVISION, owned_replica_sets
from handlers.incident import AlertParams, diagnosis
from handlers.pods import (
    app_pods,
    is_ready,
    pod_events,
    pod_problem,
)
from handlers.workload import read_workload, rollout_state

__all__ = [
    "deployment",
]



@handler("incident.deployment_rollout", params=AlertParams)
async def deployment(*, ctx: HandlerContext, params: AlertParams, **_: object) -> Result:
    """KubeDeploymentReplicasMismatch / KubeDeploymentRolloutStuck: replica counts, conditions,
    new against old ReplicaSets, and why pods are not ready."""
    app = ctx.require_app()
    workload = await read_workload(ctx)
    obj, status = workload.obj, workload.obj.status
    state = rollout_state(workload)
    desired = workload.desired

    def count(name: str) -> int:
        return int(getattr(status, name, None) or 0) if status else 0

    ready, updated, available = (count("ready_replicas"), count("updated_replicas"),
                                 count("available_replicas"))
    conditions = {c.type: c for c in (status.conditions or [])} if status else {}
    progressing = conditions.get("Progressing")
    pods = await app_pods(ctx, workload)
    problems: dict[str, str] = {}
    for pod in pods:
        if not is_ready(pod):
            problems[pod.metadata.name] = pod_problem(pod, await pod_events(ctx,
                                                                            pod.metadata.name))
    sets: list[tuple[int, Any]] = []
    if workload.kind == "Deployment":
        for rs in await owned_replica_sets(ctx, workload):
            number = (rs.metadata.annotations or {}).get(REVISION, "")
            if is_digits(number):
                sets.append((int(number), rs))
    sets.sort(key=lambda item: item[0], reverse=True)
    new = sets[0][1] if sets else None
    rs_lines = [
        f"revision {n}{' (new)' if rs is new else ''}: {rs.metadata.name} "
        f"{', '.join(c.image for c in rs.spec.template.spec.containers)} "
        f"{int(rs.status.ready_replicas or 0) if rs.status else 0}/{int(rs.spec.replicas or 0)}"
        f" ready" for n, rs in sets if rs is new or (rs.spec.replicas or 0) > 0]
    top = _most_common(problems.values())
    paused = workload.kind == "Deployment" and bool(obj.spec.paused)
    stuck = state.deadline_exceeded
    since = None  # a stuck or unfinished rollout: since it began; otherwise the alert's start
    if new is not None and (stuck or updated < desired):
        since = new.metadata.creation_timestamp
    elif stuck and progressing is not None:
        since = progressing.last_transition_time
    if paused:
        cause = "the rollout is paused (spec.paused)"
    elif top:
        cause = f"{len(problems)} pod(s) not ready: {top}"
        if stuck:
            cause = (f"revision {workload.revision} made no progress for "
                     f"{obj.spec.progress_deadline_seconds}s; {cause}")
    elif ready >= desired and updated >= desired and not stuck:
        cause = "it has recovered: every replica is ready and updated"
    else:
        cause = state.message
    what = (f"{workload.name}: rollout of revision {workload.revision} is stuck" if stuck
            else f"{workload.name}: {ready}/{desired} ready, {updated} updated, "
                 f"{available} available")
    evidence = [
        ("Replicas", f"{desired} desired · {ready} ready · {updated} updated · "
                     f"{available} available"),
        ("Rollout", "progress deadline exceeded" if stuck else state.message),
    ]
    for kind in ("Progressing", "Available"):
        cond = conditions.get(kind)
        if cond is not None:
            evidence.append((f"Condition {kind}", f"{cond.status} ({cond.reason}): "
                                                  f"{cond.message}"))
    if rs_lines:
        evidence.append(("ReplicaSets", "; ".join(rs_lines)))
    suggest = "rollback" if stuck and len(sets) > 1 else "diagnose"
    evidence.append(("Suggested", f"Rollback {app.name} to revision {sets[1][0]}" if
                     suggest == "rollback" else "Diagnose the pods"))
    lines = ["PODS NOT READY" if problems else "PODS NOT READY: none",
             *(f"  {name}: {why}" for name, why in problems.items())]
    return diagnosis(
        what=what, cause=cause, alert=params.alert, since=since, evidence=evidence,
        output="\n".join(lines),
        data={"desired": desired, "ready": ready, "updated": updated, "available": available,
              "stuck": stuck, "paused": paused, "not_ready": problems, "suggest": suggest,
              **({"rollback_app": app.name} if suggest == "rollback" else {})})


def _most_common(values: Any) -> str | None:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return max(counts, key=lambda v: counts[v]) if counts else None


