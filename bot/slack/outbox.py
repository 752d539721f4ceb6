"""What the Slack front end sends, as outbox rows: a message shown (posted, then updated in
place), a post, an ephemeral reply, a file upload. Writing one is a short commit in the store;
`SlackSender` (sender.py) makes the API calls, so no runbook, approval or alert waits on Slack.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.api import SlackCallFailed, call
from bot.store import Store, StoreError
from bot.store.calls import store_call
from bot.store.outbox import Orphan, Outgoing

__all__ = ["FALLBACK_ERRORS", "ephemeral", "post", "send", "show", "upload"]

# Errors meaning "this channel cannot take it": a row's `instead` is sent in its place.
FALLBACK_ERRORS = frozenset({"not_in_channel", "channel_not_found", "is_archived",
                             "user_not_in_channel"})

Blocks = Sequence[dict[str, Any]]

log = logging.getLogger("opsbot.slack")


def _message(channel: str, text: str, blocks: Blocks | None,
             thread_ts: str | None) -> dict[str, Any]:
    payload: dict[str, Any] = {"channel": channel, "text": text}
    if blocks:
        payload["blocks"] = list(blocks)
    if thread_ts:
        payload["thread_ts"] = thread_ts
    return payload


def show(key: str, *, channel: str, text: str, blocks: Blocks, ts: str | None = None,
         thread_ts: str | None = None, parent: str | None = None, orphan: Orphan = "drop",
         instead: Sequence[Outgoing] = ()) -> Outgoing:
    """Message `key` shows this: posted in `channel` the first time (in `thread_ts`, or under
    `parent`), updated in place after; `ts` when the caller knows where it already stands."""
    payload = _message(channel, text, blocks, thread_ts)
    if ts:
        payload["ts"] = ts
    return Outgoing("show", payload, key=key, parent=parent, orphan=orphan,
                    instead=tuple(i.action() for i in instead))


def post(*, channel: str, text: str, blocks: Blocks | None = None, thread_ts: str | None = None,
         parent: str | None = None, orphan: Orphan = "drop", broadcast: bool = False,
         instead: Sequence[Outgoing] = ()) -> Outgoing:
    """A new message, never edited; a reply in `thread_ts` or under `parent` (`broadcast`
    also shows a reply in the channel)."""
    payload = _message(channel, text, blocks, thread_ts)
    if broadcast:
        payload["reply_broadcast"] = True
    return Outgoing("post", payload, parent=parent, orphan=orphan,
                    instead=tuple(i.action() for i in instead))


def ephemeral(*, channel: str, user: str, text: str, blocks: Blocks | None = None,
              thread_ts: str | None = None, instead: Sequence[Outgoing] = ()) -> Outgoing:
    """A reply only `user` sees, in `channel`."""
    payload = _message(channel, text, blocks, thread_ts) | {"user": user}
    return Outgoing("ephemeral", payload, instead=tuple(i.action() for i in instead))


def upload(*, channel: str, parent: str, content: bytes, filename: str,
           title: str | None) -> Outgoing:
    """A file shared in the thread of message `parent` (nowhere, if that was never posted)."""
    return Outgoing("upload", {"channel": channel, "filename": filename, "title": title},
                    parent=parent, content=content)


async def send_all(store: Store, items: Sequence[tuple[Outgoing, str | None]]) -> None:
    """Commit each (outgoing, stream) to the outbox, in order, in one transaction."""
    if items:
        await store_call(store.deadline, store.enqueue_all, items)


async def send(store: Store, outgoing: Outgoing, *, stream: str | None = None,
               direct: AsyncWebClient | None = None) -> None:
    """Commit `outgoing` to the outbox (a few milliseconds); the sender delivers it.

    With `direct`, an ephemeral reply the store cannot take (the database is down: the reply
    is usually the one saying so) goes straight to Slack instead: it edits nothing and needs no
    order, and the person must hear that nothing ran. Anything else waits for the store."""
    try:
        await store_call(store.deadline, store.enqueue, outgoing, stream=stream)
    except (StoreError, TimeoutError) as exc:
        if direct is None or outgoing.kind != "ephemeral":
            raise
        log.warning("the outbox cannot take a reply (%s); sending it to Slack directly",
                    type(exc).__name__)
        try:
            await call("chat.postEphemeral", direct.chat_postEphemeral, **outgoing.payload)
        except SlackCallFailed as failed:
            log.warning("the direct reply failed too: %s", failed.error)
            raise exc from failed
