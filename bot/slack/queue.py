"""Acked once on disk: a slash command or a button click is claimed and queued in the store
(one short transaction), then acked, then run from that record.

The record is committed with every other record arriving meanwhile (the store's group commit,
bot/store/batch.py), on its own thread, never behind the store calls of running work. The ack
waits for the record and for nothing else, so Slack's 3 seconds never bite and a crash
right after the ack loses nothing: the leader finds triggers acked and never started (the
process died in between) and starts them if they are fresh (`RESUME_WITHIN`), or tells the
asker that nothing ran. Starting is a conditional update in the store, so each runs once across
replicas, whoever starts it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Collection
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from bot import messages
from bot.metrics import TRIGGERS
from bot.services import Services
from bot.slack.blocks import message_text
from bot.slack.outbox import ephemeral, send
from bot.storable import unstorable_trigger
from bot.store import AuditEntry, StoreError
from bot.trigger import Trigger

__all__ = ["ACCEPT_WAIT_SECONDS", "ORPHANED_AFTER", "RESUME_WITHIN", "Start", "Take", "accept",
           "decode", "encode", "resume_unstarted"]

log = logging.getLogger("opsbot.slack")

Start = Callable[[Trigger, str | None], None]


class Take(Protocol):
    """Records a trigger (`accept`), to be acked by the caller, then runs it."""

    async def __call__(self, trigger: Trigger, thread_ts: str | None = None) -> None: ...

# Slack waits 3 seconds for the ack; past this the ack goes without the record and the
# dispatcher claims the delivery itself (as it did before queueing), or says nothing ran.
ACCEPT_WAIT_SECONDS = 2.0
# A trigger acked this long ago and not started was left by a process that died (a live one
# starts it within milliseconds of the ack).
ORPHANED_AFTER = timedelta(seconds=30)
# A trigger found unstarted runs if it was acked at most this long ago; an older one is
# reported, not run: a command typed many minutes ago may no longer be what anyone wants.
RESUME_WITHIN = timedelta(minutes=2)


# One encoder: `json.dumps` with options makes a new one on every call.
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def encode(trigger: Trigger, thread_ts: str | None) -> str:
    return _JSON.encode({
        "source": trigger.source, "actor": trigger.actor, "text": trigger.text,
        "channel": trigger.channel, "delivery_id": trigger.delivery_id, "via": trigger.via,
        "received_at": trigger.received_at.isoformat(), "thread_ts": thread_ts,
    })


def decode(text: str) -> tuple[Trigger, str | None]:
    data: dict[str, Any] = json.loads(text)
    trigger = Trigger(source=data["source"], actor=data["actor"], text=data["text"],
                      channel=data["channel"], delivery_id=data["delivery_id"], via=data["via"],
                      received_at=datetime.fromisoformat(data["received_at"]), queued=True)
    return trigger, data.get("thread_ts")


async def accept(services: Services, trigger: Trigger, thread_ts: str | None,
                 start: Start) -> None:
    """Record `trigger` (claim and queue) before the caller acks, then start its work in the
    background once the ack is sent. A duplicate starts nothing. When the store cannot take it
    in time, the work starts unrecorded and the dispatcher claims the delivery (or says nothing
    ran)."""
    store = services.store
    if not trigger.delivery_id or unstorable_trigger(trigger) is not None:
        start(trigger, thread_ts)  # the dispatcher answers what cannot be stored
        return
    try:
        first = await store.commit_trigger(trigger.delivery_id, encode(trigger, thread_ts),
                                           min(ACCEPT_WAIT_SECONDS, store.deadline))
    except (StoreError, TimeoutError) as exc:
        log.warning("delivery %s acked before it was recorded: the store failed (%s)",
                    trigger.delivery_id, type(exc).__name__)
        start(trigger, thread_ts)
        return
    if not first:
        log.info("duplicate delivery %s ignored", trigger.delivery_id)
        TRIGGERS.labels(source=trigger.source, outcome="duplicate").inc()
        return
    # Started once the loop has sent the ack (the caller answers in this same step): the ack
    # waits for the record alone. Should the process stop before, the record is there and
    # the round for unstarted triggers starts it.
    asyncio.get_running_loop().call_soon(_start_queued, start, trigger, thread_ts)


def _start_queued(start: Start, trigger: Trigger, thread_ts: str | None) -> None:
    # The queued copy is made here, after the ack is sent, not on its way.
    start(replace(trigger, queued=True), thread_ts)


async def resume_unstarted(services: Services, start: Start,
                           older_than: timedelta = ORPHANED_AFTER,
                           holding: Collection[str] = ()) -> list[str]:
    """The leader's part: triggers acked more than `older_than` ago and never started are
    started if fresh, otherwise marked started and reported to the asker (audited), never run.
    `holding`: the delivery ids whose work this process still holds or waits to start, under
    a burst longer than `older_than` (bot/slack/tasks.py): left alone. Returns the delivery
    keys handled."""
    store = services.store
    queued = await asyncio.to_thread(store.unstarted_triggers, older_than)
    handled = []
    now = datetime.now(UTC)
    for row in queued:
        if row.key in holding:
            continue
        try:
            trigger, thread_ts = decode(row.trigger)
        except (ValueError, KeyError, TypeError):
            log.error("queued delivery %s cannot be read; dropped", row.key)
            await asyncio.to_thread(store.start_trigger, row.key)
            continue
        received = messages.clock_time(trigger.received_at, now)
        handled.append(row.key)
        if now - trigger.received_at <= RESUME_WITHIN:
            log.warning("delivery %s (%s) was acked by %s and not started; starting it now",
                        row.key, trigger.text[:80], row.owner)
            await _tell(services, trigger, thread_ts,
                        messages.trigger_resumed(trigger.text, received))
            start(trigger, thread_ts)  # the dispatcher's start decides, once
            continue
        if not await asyncio.to_thread(store.start_trigger, row.key):
            continue  # started meanwhile (its replica was alive after all)
        log.warning("delivery %s (%s) was acked by %s and never started; not run, reported",
                    row.key, trigger.text[:80], row.owner)
        await asyncio.to_thread(store.audit, AuditEntry(
            actor=trigger.actor, source=trigger.source, command=trigger.text, environment=None,
            target=None, outcome="not_started",
            details={"detail": "acked, then opsbot restarted before starting it; not run",
                     "received_at": trigger.received_at.isoformat(), "acked_by": row.owner}))
        await _tell(services, trigger, thread_ts,
                    messages.trigger_not_started(trigger.text, received))
    return handled


async def _tell(services: Services, trigger: Trigger, thread_ts: str | None, text: str) -> None:
    if trigger.channel:
        await send(services.store, ephemeral(channel=trigger.channel, user=trigger.actor,
                                             text=message_text(text), thread_ts=thread_ts))
