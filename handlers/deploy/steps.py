"""The deploy and rollback steps runbooks call: plan, apply, wait, revert.

Each picks the app's strategy; the plan travels between steps as data, so what is applied is
exactly what was shown (and its digest is what approvals will bind to).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import Field

from bot.registry import HandlerContext, MadeRevision, Params, Result, handler
from handlers.deploy.plan import Plan
from handlers.deploy.strategy import Strategy, strategy_for
from handlers.links import dashboard_field

__all__ = ["apply", "plan", "revert", "wait"]


class PlanParams(Params):
    action: Literal["deploy", "rollback"]
    image: str | None = None
    to_revision: int | None = None
    disable_autosync: bool = False


class PlanRef(Params):
    plan: dict[str, Any]


class WaitParams(PlanRef):
    timeout_seconds: float | None = Field(default=None, gt=0)
    poll_seconds: float = Field(default=1.0, gt=0)


class RevertParams(WaitParams):
    reason: str = "the change failed"


@handler("deploy.plan", params=PlanParams)
async def plan(*, ctx: HandlerContext, params: PlanParams, **_: object) -> Result:
    """Compute what a deploy or rollback would change; refuse a change that changes nothing."""
    strategy = strategy_for(ctx)
    if params.action == "deploy":
        if not params.image:
            from bot.errors import PermanentError

            raise PermanentError("deploy needs an image or tag")
        made = await strategy.plan_deploy(ctx, params.image)
    else:
        made = await strategy.plan_rollback(
            ctx, params.to_revision, disable_auto_sync=params.disable_autosync
        )
    changes = "; ".join(f"{c.what} {c.before} → {c.after}" for c in made.changes)
    verb = "would" if ctx.dry_run else "will"
    return Result(
        summary=f"{verb} {made.action} {made.app}: {changes}",
        fields=made.fields(),
        data={"plan": made.to_data(), "digest": made.digest()},
    )


@handler("deploy.apply", params=PlanRef, mutating=True)
async def apply(*, ctx: HandlerContext, params: PlanRef, **_: object) -> Result:
    """Apply a plan made by `deploy.plan` (refused if the target changed since)."""
    made = Plan.from_data(params.plan)
    if ctx.dry_run:
        return Result(summary=f"dry run: plan {made.digest()[:12]} not applied")
    summary = await strategy_for(ctx).apply(ctx, made)
    ctx.log.info(
        "applied %s plan %s to %s/%s", made.action, made.digest()[:12], made.namespace, made.target
    )
    return Result(summary=summary, data={"applied_at": datetime.now(UTC).isoformat()})


@handler("deploy.wait", params=WaitParams)
async def wait(*, ctx: HandlerContext, params: WaitParams, **_: object) -> Result:
    """Follow the rollout of an applied plan until it is done, fails, or times out."""
    made = Plan.from_data(params.plan)
    if ctx.dry_run:
        return Result(summary="dry run: nothing to wait for")
    timeout = params.timeout_seconds or float(ctx.require_app().deploy.timeout_seconds)
    state = await _follow(ctx, strategy_for(ctx), made, timeout, params.poll_seconds)
    # The dashboard from the rollout's start to its end plus a margin (grafana.*).
    end = datetime.now(UTC)
    link = dashboard_field(ctx, end - timedelta(seconds=state.seconds or 0),
                           end + timedelta(seconds=ctx.settings.grafana.margin_seconds))
    if state.done:
        return Result(
            summary=f"rolled out: {state.message}",
            fields=link,
            data={"revision": state.revision, "seconds": state.seconds},
            made=_made(made, state),
        )
    why = state.message if state.failed else f"not done after {timeout:.0f}s: {state.message}"
    # A rollout that failed after the controller took the change still made its revision.
    return Result(summary=f"rollout failed: {why}", ok=False, fields=link,
                  data={"revision": state.revision}, made=_made(made, state))


@handler("deploy.revert", params=RevertParams, mutating=True)
async def revert(*, ctx: HandlerContext, params: RevertParams, **_: object) -> Result:
    """Automatic rollback: undo an applied plan after a failed rollout or analysis."""
    made = Plan.from_data(params.plan)
    if ctx.dry_run:
        return Result(summary="dry run: nothing to roll back")
    strategy = strategy_for(ctx)
    ctx.log.warning("automatic rollback of %s/%s: %s", made.namespace, made.target, params.reason)
    summary = await strategy.revert(ctx, made, params.reason)
    timeout = params.timeout_seconds or float(ctx.require_app().deploy.timeout_seconds)
    state = await _follow(ctx, strategy, made, timeout, params.poll_seconds)
    fields = (("Reason", params.reason),)
    if state.done:
        return Result(
            summary=f"rolled back automatically: {summary}; {state.message}",
            fields=fields,
            data={"revision": state.revision},
            made=_made(made, state),
        )
    return Result(
        summary=f"automatic rollback did not finish: {summary}; {state.message}",
        fields=fields,
        ok=False,
        made=_made(made, state),
    )


def _made(plan: Plan, state: _State) -> tuple[MadeRevision, ...]:
    """The revision the plan's change made: the one running now, if it is not the one that
    ran before the change (a controller that has not seen the change yet reports that)."""
    if state.revision is None or state.revision == plan.current_revision:
        return ()
    return (MadeRevision(plan.kind, plan.target, state.revision),)


async def _follow(
    ctx: HandlerContext, strategy: Strategy, made: Plan, timeout: float, poll: float
) -> _State:
    started = time.monotonic()
    while True:
        state = await strategy.progress(ctx, made)
        elapsed = time.monotonic() - started
        if state.done or state.failed or elapsed >= timeout:
            return _State(state.done, state.failed, state.message, state.revision, elapsed)
        await ctx.progress(f"rolling out: {state.message} ({elapsed:.0f}s)")
        await asyncio.sleep(poll)


class _State:
    def __init__(
        self, done: bool, failed: bool, message: str, revision: str | None, seconds: float
    ) -> None:
        self.done, self.failed, self.message = done, failed, message
        self.revision, self.seconds = revision, round(seconds, 1)
