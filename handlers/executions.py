"""`executions [--running] [--app APP]`: recent and running executions, who started them, how
they ended, and a link to each one's Slack message when it has one."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import Field

from bot import messages
from bot.registry import HandlerContext, Params, Result, handler

__all__ = ["ExecutionsParams", "executions"]

SHOWN = 10  # in the message; all of them in the output


class ExecutionsParams(Params):
    running: bool = False
    app: str = Field(default="", description="Only this app's executions; empty: all.")
    environment: str = Field(default="", description="Only this environment; empty: all.")
    limit: int = Field(default=20, ge=1, le=100)


@handler("opsbot.executions", params=ExecutionsParams)
async def executions(*, ctx: HandlerContext, params: ExecutionsParams, **_: object) -> Result:
    """Executions newest first: id, command, who, environment, state, start and duration."""
    found = await ctx.records.executions(
        limit=params.limit + 1, running=params.running, environment=params.environment or None,
        target=params.app or None)
    # Not this listing itself: it is always running while it lists.
    found = [ex for ex in found if ex["id"] != ctx.execution_id][:params.limit]
    now = datetime.now(UTC)
    rows = [(ex["id"], messages.execution_line(
        command=ex["command"], who=ctx.settings.handle(ex["actor"]),
        environment=ex["environment"], status=ex["status"], dry_run=ex["dry_run"],
        started=ex["started_at"], finished=ex["finished_at"], now=now,
        cancel_by=ctx.settings.handle(ex["cancel_requested_by"])
        if ex["cancel_requested_by"] else None,
        link=ex["link"])) for ex in found]
    output = "\n".join(f"{ex_id}  {line}" for ex_id, line in rows) \
        if len(rows) > SHOWN else None
    return Result(
        summary=messages.executions_summary(len(rows), running=params.running,
                                            app=params.app or None,
                                            environment=params.environment or None),
        fields=tuple(rows[:SHOWN]),
        output=output,
        data={"executions": [{
            "id": ex["id"], "command": ex["command"], "actor": ex["actor"],
            "environment": ex["environment"], "status": ex["status"],
            "started_at": ex["started_at"].isoformat(),
            "finished_at": ex["finished_at"].isoformat() if ex["finished_at"] else None,
            "link": ex["link"]} for ex in found]},
    )
