"""`history`: an app's revisions with their images and times, and who deployed each (from the
audit log, not from annotations anyone can edit)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import Field

from bot.errors import PermanentError
from bot.registry import HandlerContext, Params, Result, handler
from handlers.deploy.kubernetes import REVISION, owned_replica_sets
from handlers.workload import read_workload

__all__ = ["history"]


class HistoryParams(Params):
    limit: int = Field(default=10, ge=1, le=50)


@handler("deploy.history", params=HistoryParams)
async def history(*, ctx: HandlerContext, params: HistoryParams, **_: object) -> Result:
    """Revisions of the app's Deployment, newest first, with who deployed each."""
    app = ctx.require_app()
    if app.deploy.strategy == "argo-rollouts":
        raise PermanentError(f"history of {app.name} (an Argo Rollout) is not available yet")
    workload = await read_workload(ctx)
    if workload.kind != "Deployment":
        raise PermanentError(f"history of a {workload.kind} is not available yet")
    replica_sets = await owned_replica_sets(ctx, workload)
    records = await ctx.records.audit_records(
        environment=ctx.environment.name,
        target=app.name,
        outcomes=("succeeded", "failed"),
        limit=500,
    )
    who = _deployers(records, ctx.settings.handle)
    rows: list[tuple[int, Any]] = []
    for rs in replica_sets:
        try:
            rows.append((int((rs.metadata.annotations or {}).get(REVISION, "")), rs))
        except ValueError:
            continue
    rows.sort(key=lambda row: row[0], reverse=True)
    current = workload.revision
    lines = []
    for number, rs in rows[: params.limit]:
        images = ", ".join(c.image for c in rs.spec.template.spec.containers)
        created = _when(rs.metadata.creation_timestamp)
        mark = " (current)" if str(number) == current else ""
        by = who.get(str(number), "not deployed through opsbot")
        lines.append(f"{number}{mark}  {images}  {created}  {by}")
    summary = f"{app.name} in {ctx.environment.name}: {len(rows)} revisions, current {current}"
    # The newest five fit in the message; the whole list goes to the thread when longer.
    output = "REVISION  IMAGE  CREATED  BY\n" + "\n".join(lines) if len(lines) > 5 else None
    return Result(
        summary=summary,
        output=output,
        fields=tuple(
            (f"Revision {line.split()[0]}", " ".join(line.split()[1:])) for line in lines[:5]
        ),
    )


def _deployers(records: list[dict[str, Any]], handle: Callable[[str], str]) -> dict[str, str]:
    """revision -> 'alice: deploy shop-api 1.5.0 (2026-11-26 12:01)', oldest record first so
    the newest claim on a revision wins."""
    found: dict[str, str] = {}
    for record in reversed(records):
        details = record.get("details") or {}
        for step, revision in (details.get("revisions") or {}).items():
            how = "automatic rollback after " if step == "revert" else ""
            when = str(record.get("time", ""))[:16].replace("T", " ")
            found[str(revision)] = f"{how}{handle(record['actor'])}: {record['command']} ({when})"
    return found


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "?"
