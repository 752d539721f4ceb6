"""`locks`: who holds which target lock, since when, for what; `unlock`: an admin removes a stuck
one (the lease would expire on its own)."""

from __future__ import annotations

from bot import messages
from bot.registry import HandlerContext, NoParams, Result, handler

__all__ = ["locks", "unlock"]


@handler("opsbot.locks", params=NoParams)
async def locks(*, ctx: HandlerContext, params: NoParams, **_: object) -> Result:
    """Every target lock in force: the target, who holds it, since when, and the execution (and
    its command, and the approval request it runs) holding it."""
    held = await ctx.records.held_locks()
    fields = tuple(
        (messages.lock_field(lock["target"], lock["environment"]),
         messages.lock_holder(ctx.settings.handle(lock["actor"]), lock["acquired_at"],
                              lock["command"], lock["execution_id"], lock["request_id"]))
        for lock in held)
    return Result(summary=messages.locks_summary(len(held)), fields=fields,
                  data={"locks": [{k: (v.isoformat() if hasattr(v, "isoformat") else v)
                                   for k, v in lock.items()} for lock in held]})


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
