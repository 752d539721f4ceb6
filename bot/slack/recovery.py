"""After a restart, executions the last process left running are marked interrupted (never
re-run); their Slack messages are updated to say so, so no one waits on a dead "running"."""

from __future__ import annotations

import asyncio
import logging
from typing import cast, get_args

from slack_sdk.web.async_client import AsyncWebClient

from bot import messages
from bot.reporting import ExecutionView, StepStatus, StepView
from bot.services import Services
from bot.slack.api import SlackCallFailed, call
from bot.slack.blocks import execution_blocks, execution_text
from bot.store import ExecutionRecord

__all__ = ["interrupted_view", "recover"]

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


async def recover(services: Services, client: AsyncWebClient) -> list[str]:
    """Mark interrupted executions and update the messages of those that had one."""
    interrupted = await services.recover()
    for execution_id in interrupted:
        record = await asyncio.to_thread(services.store.get_execution, execution_id)
        if record is None or not record.channel or not record.ts:
            continue
        view = interrupted_view(record, services.settings.handle(record.actor))
        try:
            await call("chat.update", client.chat_update, channel=record.channel, ts=record.ts,
                       text=execution_text(view), blocks=execution_blocks(view))
        except SlackCallFailed as exc:
            log.warning("message of interrupted execution %s not updated: %s", execution_id, exc)
    return interrupted
