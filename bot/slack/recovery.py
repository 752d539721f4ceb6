"""After a restart, executions the last process left running are marked interrupted (never
re-run); their Slack messages are updated to say so, so no one waits on a dead "running".

The updates go through the outbox like every other message: one whose first post is still
waiting there (Slack was down) joins that message's stream and is delivered after it."""

from __future__ import annotations

import asyncio
import logging
from typing import cast, get_args

from bot import messages
from bot.reporting import ExecutionView, StepStatus, StepView
from bot.services import Services
from bot.slack.blocks import execution_blocks, execution_text
from bot.slack.outbox import send, show
from bot.store import ExecutionRecord
from bot.store.outbox import execution_key

__all__ = ["interrupted_view", "recover", "report_interrupted"]

log = logging.getLogger("opsbot.slack")

_STEP_STATUSES = set(get_args(StepStatus))


def interrupted_view(record: ExecutionRecord, actor: str) -> ExecutionView:
    """The execution as its message should now read: the steps it got to, and the warning."""
    steps = [
        StepView(
            name=step.name,
            status=cast(StepStatus, step.status if step.status in _STEP_STATUSES else "failed"),
            summary=step.summary or step.error or "",
        )
        for step in sorted(record.steps, key=lambda s: s.index)
    ]
    return ExecutionView(
        execution_id=record.id,
        runbook=record.runbook,
        command=record.command,
        actor=actor,
        environment=record.environment or "",
        target=record.target,
        dry_run=record.dry_run,
        status="interrupted",
        steps=steps,
        summary=messages.interrupted_summary(),
    )


async def recover(services: Services) -> list[str]:
    """Mark interrupted executions and update the messages of those that had one (posted, or
    still waiting in the outbox)."""
    interrupted = await services.recover()
    await report_interrupted(services, interrupted)
    return interrupted


async def report_interrupted(services: Services, interrupted: list[str]) -> None:
    """Update the messages of executions just marked interrupted."""
    store = services.store
    for execution_id in interrupted:
        record = await asyncio.to_thread(store.get_execution, execution_id)
        if record is None or not record.channel:
            continue
        key = execution_key(execution_id)
        stream = await asyncio.to_thread(store.message_stream, key)
        if not record.ts and stream is None:
            continue  # nothing was ever said about it in Slack
        view = interrupted_view(record, services.settings.handle(record.actor))
        await send(store, show(key, channel=record.channel, ts=record.ts,
                               text=execution_text(view), blocks=execution_blocks(view)),
                   stream=stream)
        log.info("message of interrupted execution %s queued for update", execution_id)
