"""Ticks on a post-change checklist (the boxes posted in a finished change's thread): only the
person who asked for the change ticks them, and each tick lands in the audit log."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot import messages
from bot.services import Services
from bot.slack.blocks import POST_CHECKLIST_ACTION, POST_CHECKLIST_BLOCK, message_text
from bot.slack.outbox import ephemeral, post, send
from bot.store import AuditEntry, StoreError
from bot.store.outbox import execution_key

__all__ = ["register_checklist", "ticks"]

log = logging.getLogger("opsbot.slack")

BLOCK = re.compile(re.escape(POST_CHECKLIST_BLOCK) + r"(ex-[0-9A-Za-z]{4,40})")
CHANNEL_ID = re.compile(r"[A-Z0-9]{2,40}")


def ticks(action: dict[str, Any]) -> tuple[str, list[tuple[int, str]]] | None:
    """The execution and the ticked items (number, text) of a click on the checkboxes; None
    when the block is not ours."""
    found = BLOCK.fullmatch(str(action.get("block_id") or ""))
    if found is None:
        return None
    items: list[tuple[int, str]] = []
    for option in action.get("selected_options") or ():
        value = str((option or {}).get("value") or "")
        if value.isascii() and value.isdigit() and len(value) <= 2:
            text = str(((option or {}).get("text") or {}).get("text") or "")[:200]
            items.append((int(value), text))
    return found.group(1), sorted(set(items))


def boxes(body: dict[str, Any], block_id: str) -> int:
    """How many boxes the clicked checklist shows (the message as Slack sent it back)."""
    blocks = (body.get("message") or {}).get("blocks")
    for block in blocks if isinstance(blocks, list) else ():
        if isinstance(block, dict) and block.get("block_id") == block_id:
            elements = block.get("elements")
            if isinstance(elements, list) and elements and isinstance(elements[0], dict):
                options = elements[0].get("options")
                return len(options) if isinstance(options, list) else 0
    return 0


def register_checklist(app: AsyncApp, services: Services, web: AsyncWebClient) -> None:
    store = services.store

    @app.action(POST_CHECKLIST_ACTION)
    async def on_tick(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        found = ticks(action)
        user = str(body["user"]["id"])  # from the signed payload
        channel = str((body.get("channel") or {}).get("id") or "")
        if found is None or not CHANNEL_ID.fullmatch(channel):
            log.warning("checklist tick with an unknown block ignored")
            await ack()
            return
        execution_id, items = found
        try:
            run = await asyncio.to_thread(store.get_execution, execution_id)
        except StoreError:
            log.warning("checklist tick on %s not recorded: the store failed", execution_id)
            run = None
        if run is None:
            await ack()
            return
        if user != run.actor:
            await ack()
            await send(store, ephemeral(channel=channel, user=user, text=message_text(
                messages.post_checklist_not_yours(services.settings.handle(run.actor)))))
            return
        total = boxes(body, str(action.get("block_id")))
        # Recorded before the ack: a tick Slack showed as accepted is in the audit log.
        try:
            await asyncio.to_thread(store.audit, AuditEntry(
                actor=user, source="slack", command=run.command, environment=run.environment,
                target=run.target, outcome="checklist", execution_id=execution_id,
                request_id=run.request_id,
                details={"ticked": [f"{n}. {text}" for n, text in items], "of": total}))
        except StoreError as exc:
            log.warning("checklist tick on %s not recorded: %s", execution_id,
                        type(exc).__name__)
            await ack()
            # The outbox is in the same database: this reply may have to go to Slack directly.
            with contextlib.suppress(StoreError, TimeoutError):
                await send(store, ephemeral(channel=channel, user=user, text=message_text(
                    messages.post_checklist_not_recorded())), direct=web)
            return
        await ack()
        if total and len(items) == total:
            await send(store, post(channel=channel, parent=execution_key(execution_id),
                                   text=message_text(messages.post_checklist_ticked(
                                       services.settings.handle(user), len(items), total))))
