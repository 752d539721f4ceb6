"""`promote` and `abort`: the two decisions a person makes about an Argo Rollouts canary, sent
as `kubectl argo rollouts promote|abort` sends them (merge patches of status and spec)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from pydantic import Field

from bot.errors import Refused
from bot.markup import code
from bot.registry import HandlerContext, Params, Result, handler
from handlers.deploy.rollouts import (
    GROUP,
    PLURAL,
    STRATEGY,
    VERSION,
    RolloutView,
    abort_rollout,
    describe,
    read_rollout,
    replica_sets,
    rs_hash,
    rs_image,
)
from handlers.deploy.strategy import strategy_for

__all__ = ["AbortParams", "PromoteParams", "abort", "promote"]


class PromoteParams(Params):
    full: bool = False  # skip the remaining steps and pauses (`promote --full`)
    wait_seconds: float = Field(default=30, ge=0)


class AbortParams(Params):
    wait_seconds: float = Field(default=30, ge=0)


async def _rollout(ctx: HandlerContext, verb: str) -> RolloutView:
    app = ctx.require_app()
    if strategy_for(ctx, app) is not STRATEGY:
        raise Refused(
            f"{app.name} is deployed with the {code(app.deploy.strategy)} strategy in "
            f"{ctx.environment.name}, not Argo Rollouts: there is no canary to {verb}"
        )
    return await read_rollout(ctx, app)


async def _fields(ctx: HandlerContext, view: RolloutView) -> tuple[tuple[str, str], ...]:
    app = ctx.require_app()
    by_hash = {rs_hash(rs): (n, rs) for n, rs in (await replica_sets(ctx, view)).items()}
    rows = [("Rollout", f"{view.namespace}/{view.name}")]
    for label, pod_hash in (("Stable", view.stable_hash), ("Canary", view.current_hash)):
        if pod_hash in by_hash and (label == "Stable" or not view.fully_promoted):
            number, rs = by_hash[pod_hash]
            rows.append((label, f"revision {number}: {rs_image(rs, app)}"))
    if view.steps and not view.fully_promoted:
        rows.append(("Step", view.where()))
    rows.append(("Phase", f"{view.phase}: {view.message}" if view.message else view.phase))
    return tuple(rows)


@handler("rollouts.promote", params=PromoteParams, mutating=True)
async def promote(*, ctx: HandlerContext, params: PromoteParams, **_: object) -> Result:
    """Promote a canary paused at a step to its next step (or fully, skipping the rest)."""
    view = await _rollout(ctx, "promote")
    if view.aborted:
        raise Refused(
            f"{view.name} was aborted; deploy again or roll back instead of promoting",
            hint=f"{code('status')} shows what runs now",
        )
    if view.fully_promoted:
        raise Refused(f"{view.name} is not in a canary ({describe(view)}); nothing to promote")
    if not view.paused and not params.full:
        raise Refused(
            f"{view.name} is not paused ({view.phase}: {view.message or 'progressing'}); "
            "nothing to promote yet"
        )
    what = "fully (remaining steps skipped)" if params.full else f"from {view.where()}"
    fields = await _fields(ctx, view)
    if ctx.dry_run:
        return Result(summary=f"would promote {view.name} {what}", fields=fields)
    custom = ctx.kube.custom
    status: dict[str, object] = {"promoteFull": True} if params.full else {}
    if view.pause_reasons:
        status["pauseConditions"] = None
    if status:
        await ctx.kube.call(
            custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            view.namespace,
            PLURAL,
            view.name,
            {"status": status},
        )
    if view.spec.get("paused"):
        await ctx.kube.call(
            custom.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            view.namespace,
            PLURAL,
            view.name,
            {"spec": {"paused": False}},
        )
    ctx.log.info("promoted rollout %s/%s %s", view.namespace, view.name, what)
    after = await _wait(ctx, params.wait_seconds, lambda v: _moved_on(view, v))
    return Result(
        summary=f"promoted {view.name} {what}; now {describe(after)}",
        fields=await _fields(ctx, after),
        data={"phase": after.phase, "step": after.step_index},
    )


@handler("rollouts.abort", params=AbortParams, mutating=True)
async def abort(*, ctx: HandlerContext, params: AbortParams, **_: object) -> Result:
    """Abort a canary: it scales to zero and the stable version serves everything again."""
    view = await _rollout(ctx, "abort")
    if view.aborted:
        raise Refused(f"{view.name} is already aborted; {describe(view)}")
    if view.fully_promoted:
        raise Refused(f"{view.name} is not in a canary ({describe(view)}); nothing to abort")
    fields = await _fields(ctx, view)
    if ctx.dry_run:
        return Result(
            summary=f"would abort the canary of {view.name} at {view.where()}: the canary "
            f"scales to 0 and the stable version takes all {view.replicas} replicas",
            fields=fields,
        )
    await abort_rollout(ctx, view)
    ctx.log.warning("aborted rollout %s/%s at %s", view.namespace, view.name, view.where())
    after = await _wait(
        ctx,
        params.wait_seconds,
        lambda v: v.aborted and v.phase == "Degraded" and v.available >= v.replicas,
    )
    image = str(after.container(ctx.require_app()).get("image", ""))
    return Result(
        summary=f"aborted the canary of {view.name}; now {describe(after)}. Its spec still "
        f"names {image}: roll back to make that permanent, or deploy a fix",
        fields=await _fields(ctx, after),
        data={"phase": after.phase},
    )


def _moved_on(before: RolloutView, now: RolloutView) -> bool:
    """The controller took the promote and got somewhere: the next pause, or the end."""
    if not now.observed or (now.status.get("controllerPause") and not now.pause_reasons):
        return False
    if now.step_index == before.step_index and not now.fully_promoted:
        return False
    return now.paused or now.phase in ("Healthy", "Degraded")


async def _wait(
    ctx: HandlerContext, seconds: float, done: Callable[[RolloutView], bool]
) -> RolloutView:
    deadline = time.monotonic() + seconds
    while True:
        view = await read_rollout(ctx)
        if done(view) or time.monotonic() >= deadline:
            return view
        await ctx.progress(describe(view))
        await asyncio.sleep(0.25)
