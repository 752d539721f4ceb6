"""`cancel <execution-id>`: ask a running execution to stop between steps.

The ask is a flag in the execution's row (who, when), so the replica running it sees it
wherever the command arrived; the runner finishes the running step, runs the runbook's
on_failure steps and ends the execution `cancelled` (bot/dispatcher.py). Who may ask: the
person who started it, anyone allowed to run that runbook in that environment, and the
environment's approvers (docs/commands.md).
"""

from __future__ import annotations

import asyncio
import logging

from bot import messages
from bot.access import Access
from bot.config import Settings
from bot.errors import Denied, Refused, UnknownName
from bot.reporting import Notice
from bot.store import AuditEntry, ExecutionRecord, NotFound, Store
from bot.trigger import Trigger

__all__ = ["cancel_execution"]

log = logging.getLogger("opsbot.cancel")


async def cancel_execution(trigger: Trigger, execution_id: str, *, store: Store,
                           access: Access, settings: Settings) -> Notice:
    """Flag `execution_id` for cancelling as `trigger.actor`, audited; Denied for someone
    who may not, Refused for one that is not running, UnknownName for an unknown id."""
    record = await asyncio.to_thread(store.get_execution, execution_id)
    if record is None:
        raise UnknownName("execution", execution_id)
    if not record.running:
        await _audit(store, trigger, record, "refused", f"it is {record.status}")
        raise Refused(messages.cancel_not_running(execution_id, record.status),
                      hint=messages.cancel_not_running_hint())
    if not await _may_cancel(trigger, record, access, settings):
        # The dispatcher audits the denial, as it does every other.
        raise Denied(messages.cancel_denied(settings.handle(trigger.actor), record.command,
                                            record.environment or "?"))
    try:
        now, asked = await asyncio.to_thread(store.request_cancel, execution_id, trigger.actor)
    except NotFound:  # pragma: no cover - read a moment ago; executions are never deleted
        raise UnknownName("execution", execution_id) from None
    record = now
    if not asked:
        if record.cancel_requested_by is not None and record.running:
            return Notice("info", messages.cancel_already_asked(
                execution_id, settings.handle(record.cancel_requested_by)))
        await _audit(store, trigger, record, "refused", f"it is {record.status}")
        raise Refused(messages.cancel_not_running(execution_id, record.status),
                      hint=messages.cancel_not_running_hint())
    await _audit(store, trigger, record, "cancel-requested", "")
    log.info("cancel of %s asked by %s", execution_id, trigger.actor)
    running = next((s.name for s in record.steps if s.status == "running"), None)
    return Notice("info", messages.cancel_asked(execution_id, record.command, running))


async def _may_cancel(trigger: Trigger, record: ExecutionRecord, access: Access,
                      settings: Settings) -> bool:
    if trigger.actor == record.actor:
        return True
    if record.environment is None:
        return False
    try:
        environment = settings.environment(record.environment)
    except UnknownName:  # an environment since removed from the config
        return False
    try:
        await access.check(trigger, record.runbook, environment)
        return True
    except Denied:
        pass
    policy = environment.approval
    if trigger.actor in policy.users:
        return True
    for group in policy.groups:
        if await access.in_group(trigger.actor, group):
            return True
    return False


async def _audit(store: Store, trigger: Trigger, record: ExecutionRecord, outcome: str,
                 detail: str) -> None:
    await asyncio.to_thread(store.audit, AuditEntry(
        actor=trigger.actor, source=trigger.source, command=trigger.text[:500],
        environment=record.environment, target=record.target, outcome=outcome,
        execution_id=record.id, request_id=record.request_id,
        details={"runbook": record.runbook, "via": trigger.via, "detail": detail,
                 "cancelled_command": record.command},
    ))
