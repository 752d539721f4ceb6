"""`unlock`: an admin removes a stuck target lock (the lease would expire on its own)."""

from __future__ import annotations

from bot import messages
from bot.registry import HandlerContext, NoParams, Result, handler

__all__ = ["unlock"]


@handler("opsbot.unlock", params=NoParams)
async def unlock(*, ctx: HandlerContext, params: NoParams, **_: object) -> Result:
    """Remove the lock on the app in this environment."""
    app, environment = ctx.require_app(), ctx.environment.name
    if ctx.dry_run:
        held = await ctx.records.lock_on(environment=environment, target=app.name)
    else:
        held = await ctx.records.force_unlock(environment=environment, target=app.name)
    holder = ctx.settings.handle(held["actor"]) if held else None
    execution_id = held["execution_id"] if held else None
    if ctx.dry_run:
        return Result(summary=messages.would_unlock(app.name, environment, holder, execution_id))
    # The log says what happened, as the reply does: a lease removed, or none there.
    if held:
        ctx.log.warning("lock on %s/%s held by %s (execution %s) removed by %s", environment,
                        app.name, held["actor"], execution_id, ctx.actor)
    else:
        ctx.log.info("unlock of %s/%s by %s: it was not locked", environment, app.name,
                     ctx.actor)
    return Result(summary=messages.unlocked(app.name, environment, holder, execution_id))
