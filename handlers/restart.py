"""`restart`: a rolling restart, as kubectl does it: `kubectl rollout restart` (the restartedAt
template annotation, a new revision) for a Deployment or StatefulSet, `kubectl argo rollouts
restart` (`spec.restartAt`, pods evicted and recreated in place) for an Argo Rollout."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import Field

from bot.errors import Refused
from bot.registry import HandlerContext, MadeRevision, Params, Result, handler
from handlers.workload import read_workload, restart_workload, wait_for_rollout

__all__ = ["RestartParams", "restart"]


class RestartParams(Params):
    wait_seconds: float = Field(default=300, ge=0)


@handler("k8s.restart", params=RestartParams, mutating=True)
async def restart(*, ctx: HandlerContext, params: RestartParams, **_: object) -> Result:
    """Replace the app's pods with a rolling restart and follow it to the end."""
    app = ctx.require_app()
    workload = await read_workload(ctx)
    # A paused Deployment would not roll the new template out; a Rollout's restart does not
    # go through its template, so its pause does not hold it.
    if workload.kind == "Deployment" and workload.obj.spec.paused:
        raise Refused(f"{workload.name} is paused; a restart would not roll out. Resume it first.")
    pods = workload.desired
    next_revision = workload.revision if workload.restarts_in_place else "next"
    if ctx.dry_run:
        return Result(
            summary=f"would restart {workload.name}: {pods} pods replaced one by one",
            fields=(("Revision", f"{workload.revision} → {next_revision}"),),
        )
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    await restart_workload(ctx, workload, now)
    ctx.log.info("restarted %s/%s at %s", workload.namespace, workload.name, now)
    state = await wait_for_rollout(ctx, app, timeout=params.wait_seconds)
    after = await read_workload(ctx)
    fields = (("Restarted at", now), ("Revision", f"{workload.revision} → {after.revision}"))
    # `kubectl rollout restart` makes a revision (a Rollout's in-place restart makes none).
    made = (MadeRevision(after.kind, after.name, after.revision),) \
        if after.revision and after.revision != workload.revision else ()
    if state.done:
        return Result(summary=f"restarted {workload.name}: {state.message}", fields=fields,
                      made=made)
    return Result(
        summary=f"restart of {workload.name} did not finish: {state.message}",
        fields=fields,
        ok=False,
        made=made,
    )
