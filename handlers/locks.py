"""`locks` and `unlock`: which targets are held (running executions' leases and the
reservations of requests awaiting approval), and an admin's removal of a stuck lease."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import Field

from bot import messages
from bot.errors import Refused
from bot.registry import HandlerContext, NoParams, Params, Result, handler

__all__ = ["LocksParams", "locks", "unlock"]

SHOWN = 10  # in the message; all of them in the output


class LocksParams(Params):
    environment: str = Field(default="", description="Only this environment; empty: all.")


@handler("opsbot.locks", params=LocksParams)
async def locks(*, ctx: HandlerContext, params: LocksParams, **_: object) -> Result:
    """Every target lock in force: who holds it, for what command, since when."""
    held = await ctx.records.held_locks()
    if params.environment:
        held = [lock for lock in held if lock["environment"] == params.environment]
    now = datetime.now(UTC)
    lines = [(messages.lock_field(lock["target"], lock["environment"]), messages.lock_line(
        holder=ctx.settings.handle(lock["actor"]), command=lock["command"],
        execution_id=lock["execution_id"], request_id=lock["request_id"],
        since=lock["acquired_at"], now=now)) for lock in held]
    output = "\n".join(f"{target}: {line}" for target, line in lines) \
        if len(lines) > SHOWN else None
    return Result(
        summary=messages.locks_summary(len(lines), params.environment or None),
        fields=tuple(lines[:SHOWN]),
        output=output,
        data={"locks": [{"environment": lock["environment"], "target": lock["target"],
                         "execution_id": lock["execution_id"],
                         "request_id": lock["request_id"], "actor": lock["actor"],
                         "command": lock["command"],
                         "since": lock["acquired_at"].isoformat()} for lock in held]},
    )


@handler("opsbot.unlock", params=NoParams)
async def unlock(*, ctx: HandlerContext, params: NoParams, **_: object) -> Result:
    """Remove the lock on the app in this environment (not a request's reservation)."""
    app, environment = ctx.require_app(), ctx.environment.name
    held = await ctx.records.lock_on(environment=environment, target=app.name)
    if held and held["execution_id"] is None:
        # A reservation ends with its request: removing it would let a change in under a
        # request approvers are still reading.
        raise Refused(messages.unlock_reserved(app.name, environment,
                                               ctx.settings.handle(held["actor"]),
                                               held["request_id"] or "?"),
                      hint=messages.unlock_reserved_hint(held["request_id"] or "?"))
    if not ctx.dry_run:
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
