"""`scale`: set replicas through the scale subresource, inside the app's configured bounds."""

from __future__ import annotations

from pydantic import Field

from bot.errors import Refused
from bot.registry import HandlerContext, Params, Result, handler
from handlers.workload import read_workload, wait_for_rollout

__all__ = ["ScaleParams", "scale"]


class ScaleParams(Params):
    replicas: int = Field(ge=0)
    wait_seconds: float = Field(default=120, ge=0)


@handler("k8s.scale", params=ScaleParams, mutating=True)
async def scale(*, ctx: HandlerContext, params: ScaleParams, **_: object) -> Result:
    """Scale the app's workload to `replicas`, then wait for it to be ready."""
    app = ctx.require_app()
    bounds = app.replicas
    if not bounds.min <= params.replicas <= bounds.max:
        raise Refused(
            f"{app.name} may run {bounds.min} to {bounds.max} replicas in "
            f"{ctx.environment.name}; {params.replicas} is outside that"
        )
    workload = await read_workload(ctx)
    name, ns = workload.name, workload.namespace
    apps = ctx.kube.apps
    if workload.kind == "StatefulSet":
        read, replace = (
            apps.read_namespaced_stateful_set_scale,
            apps.replace_namespaced_stateful_set_scale,
        )
    else:
        read, replace = (
            apps.read_namespaced_deployment_scale,
            apps.replace_namespaced_deployment_scale,
        )
    current = await ctx.kube.call(read, name, ns)
    before = int(current.spec.replicas or 0)
    change = (("Replicas", f"{before} → {params.replicas}"),)
    if before == params.replicas:
        return Result(
            summary=f"{name} already runs {before} replicas; nothing to change",
            fields=change,
            data={"before": before, "after": before},
        )
    if ctx.dry_run:
        return Result(
            summary=f"would scale {name} from {before} to {params.replicas} replicas",
            fields=change,
            data={"before": before, "after": params.replicas},
        )
    # The scale object carries its resourceVersion: a concurrent change gets a 409 and a retry.
    current.spec.replicas = params.replicas
    await ctx.kube.call(replace, name, ns, current)
    ctx.log.info("scaled %s/%s from %d to %d", ns, name, before, params.replicas)
    state = await wait_for_rollout(ctx, app, timeout=params.wait_seconds)
    summary = f"scaled {name} from {before} to {params.replicas} replicas"
    summary += f"; {state.message}" if state.done else f"; not ready yet: {state.message}"
    return Result(
        summary=summary,
        fields=change,
        ok=state.done or params.wait_seconds == 0,
        data={"before": before, "after": params.replicas},
    )
