"""`scale`: set replicas through the scale subresource (a Deployment's, StatefulSet's or Argo
Rollout's), inside the app's configured bounds."""

from __future__ import annotations

from pydantic import Field

from bot.errors import Refused
from bot.registry import HandlerContext, Params, Result, handler
from handlers.workload import read_scale, read_workload, wait_for_rollout, write_scale

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
    name = workload.name
    current = await read_scale(ctx, workload)
    before = current.replicas
    change = (("Replicas", f"{before} → {params.replicas}"),)
    if before == params.replicas:
        raise Refused(f"{name} already runs {before} replicas; nothing to change")
    if ctx.dry_run:
        return Result(
            summary=f"would scale {name} from {before} to {params.replicas} replicas",
            fields=change,
            data={"before": before, "after": params.replicas},
        )
    await write_scale(ctx, workload, current, params.replicas)
    ctx.log.info("scaled %s/%s from %d to %d", workload.namespace, name, before, params.replicas)
    state = await wait_for_rollout(ctx, app, timeout=params.wait_seconds)
    summary = f"scaled {name} from {before} to {params.replicas} replicas"
    summary += f"; {state.message}" if state.done else f"; not ready yet: {state.message}"
    return Result(
        summary=summary,
        fields=change,
        ok=state.done or params.wait_seconds == 0,
        data={"before": before, "after": params.replicas},
    )
