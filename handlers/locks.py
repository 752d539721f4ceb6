"""`unlock`: an admin removes a stuck target lock (the lease would expire on its own)."""

from __future__ import annotations

from bot import messages
from bot.registry import HandlerContext, NoParams, Result, handler

__all__ = ["unlock"]


@handler("opsbot.unlock", params=NoParams)
async def unlock(*, ctx: HandlerContext, params: NoParams, **_: object) -> Result:
    """Remove the lock on the app in this environment."""
    app = ctx.require_app()
    if ctx.dry_run:
        return Result(summary=f"would remove the lock on {app.name} in {ctx.environment.name}")
    held = await ctx.records.force_unlock(environment=ctx.environment.name, target=app.name)
    holder = ctx.settings.handle(held["actor"]) if held else None
    ctx.log.warning("lock on %s/%s removed by %s", ctx.environment.name, app.name, ctx.actor)
    return Result(
        summary=messages.unlocked(
            app.name, ctx.environment.name, holder, held["execution_id"] if held else None
        )
    )
