"""`status`: what is running for an app right now: images, revision, replica counts, conditions;
for an Argo Rollout also its phase, canary step and the stable and canary images."""

from __future__ import annotations

from bot.registry import HandlerContext, NoParams, Result, handler
from handlers.deploy.rollouts import replica_sets, rs_hash
from handlers.links import dashboard_field
from handlers.workload import Workload, read_workload

__all__ = ["status"]

Fields = list[tuple[str, str]]


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
    fields: Fields = [("Workload", f"{workload.kind} {workload.namespace}/{workload.name}")]
    stable = await _stable_images(ctx, workload)
    if stable is None:
        fields += [(f"Image ({name})", image) for name, image in images]
    else:  # a canary in progress: both versions run
        fields += [(f"Stable image ({name})", image) for name, image in stable]
        fields += [(f"Canary image ({name})", image) for name, image in images]
    fields.append(("Revision", workload.revision or "unknown"))
    fields += _rollout_fields(workload)
    fields.append(
        (
            "Replicas",
            f"{desired} desired · {ready} ready · {updated} updated · {available} available",
        )
    )
    if workload.kind != "StatefulSet" and workload.obj.spec.paused:
        fields.append(("Paused", "yes: rollouts are paused"))
    for cond in (st.conditions or []) if st else []:
        text = f"{cond.status}"
        if cond.reason:
            text += f" ({cond.reason})"
        if cond.message:
            text += f": {cond.message}"
        fields.append((f"Condition {cond.type}", text))
    summary = f"{workload.name}: {ready}/{desired} ready, {_health(workload, ready, updated)}; "
    summary += _main(images) if stable is None else \
        f"canary {_main(images)}, stable {_main(stable)}"
    if workload.revision:
        summary += f" (revision {workload.revision})"
    data: dict[str, object] = {
        "ready": ready,
        "desired": desired,
        "revision": workload.revision,
        "images": dict(images),
    }
    if workload.rollout is not None:
        data |= {"phase": workload.rollout.phase,
                 "stable_images": dict(stable if stable is not None else images)}
    fields += dashboard_field(ctx)
    return Result(summary=summary, fields=tuple(fields), data=data)


def _main(images: list[tuple[str, str]]) -> str:
    return images[0][1] if len(images) == 1 else f"{len(images)} containers"


def _health(workload: Workload, ready: int, updated: int) -> str:
    view, desired = workload.rollout, workload.desired
    if view is None or view.phase == "Healthy":
        return "healthy" if ready >= desired and updated >= desired else "not fully ready"
    if view.aborted:
        return f"canary aborted ({view.phase}), the stable version serves"
    if view.paused:
        return f"paused at {view.where()}: promote or abort"
    return f"{view.phase}: {view.message}" if view.message else view.phase


def _rollout_fields(workload: Workload) -> Fields:
    """Phase, canary step and last restart of a Rollout; nothing for other kinds."""
    view = workload.rollout
    if view is None:
        return []
    phase = view.phase + (f" ({view.message})" if view.message else "")
    rows: Fields = [("Phase", phase)]
    if view.steps and not view.fully_promoted:
        rows.append(("Step", view.where() + (", aborted" if view.aborted else "")))
    if view.status.get("restartedAt"):
        rows.append(("Restarted at", str(view.status["restartedAt"])))
    return rows


async def _stable_images(ctx: HandlerContext, workload: Workload
                         ) -> list[tuple[str, str]] | None:
    """The images the stable ReplicaSet runs while a Rollout's canary is in progress (the spec
    holds the canary's); None when all pods run the spec's template."""
    view = workload.rollout
    if view is None or view.fully_promoted or view.stable_hash is None:
        return None
    for rs in (await replica_sets(ctx, view)).values():
        if rs_hash(rs) == view.stable_hash:
            return [(str(c.get("name")), str(c.get("image")))
                    for c in rs["spec"]["template"]["spec"].get("containers") or []]
    return None
