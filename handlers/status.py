"""`status`: what is running for an app right now: images, revision, replica counts, conditions."""

from __future__ import annotations

from bot.registry import HandlerContext, NoParams, Result, handler
from handlers.workload import read_workload

__all__ = ["status"]


@handler("k8s.status", params=NoParams)
async def status(*, ctx: HandlerContext, params: NoParams, **_: object) -> Result:
    """Images, revision, replicas and conditions of the app's workload."""
    workload = await read_workload(ctx)
    st = workload.obj.status
    desired = workload.desired
    ready = int(st.ready_replicas or 0) if st else 0
    updated = int(st.updated_replicas or 0) if st else 0
    available = int(getattr(st, "available_replicas", None) or 0) if st else 0
    images = workload.images()
    fields: list[tuple[str, str]] = [
        ("Workload", f"{workload.kind} {workload.namespace}/{workload.name}")
    ]
    fields += [(f"Image ({name})", image) for name, image in images]
    fields.append(("Revision", workload.revision or "unknown"))
    fields.append(
        (
            "Replicas",
            f"{desired} desired · {ready} ready · {updated} updated · {available} available",
        )
    )
    if workload.obj.spec.__class__.__name__ == "V1DeploymentSpec" and workload.obj.spec.paused:
        fields.append(("Paused", "yes: rollouts are paused"))
    for cond in (st.conditions or []) if st else []:
        text = f"{cond.status}"
        if cond.reason:
            text += f" ({cond.reason})"
        if cond.message:
            text += f": {cond.message}"
        fields.append((f"Condition {cond.type}", text))
    health = "healthy" if ready >= desired and updated >= desired else "not fully ready"
    main = images[0][1] if len(images) == 1 else f"{len(images)} containers"
    summary = f"{workload.name}: {ready}/{desired} ready, {health}; {main}"
    if workload.revision:
        summary += f" (revision {workload.revision})"
    return Result(
        summary=summary,
        fields=tuple(fields),
        data={
            "ready": ready,
            "desired": desired,
            "revision": workload.revision,
            "images": dict(images),
        },
    )
