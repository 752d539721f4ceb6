"""What the Slack front end sends, as outbox rows: a message shown (posted, then updated in
place), a post, an ephemeral reply, a file upload. Writing one is a short commit in the store;
`SlackSender` (sender.py) makes the API calls, so no runbook, approval or alert waits on Slack.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from bot.store import Store
from bot.store.outbox import Orphan, Outgoing

__all__ = ["FALLBACK_ERRORS", "ephemeral", "post", "send", "show", "upload"]

# Errors meaning "this channel cannot take it": a row's `instead` is sent in its place.
FALLBACK_ERRORS = frozenset({"not_in_channel", "channel_not_found", "is_archived",
                             "user_not_in_channel"})

Blocks = Sequence[dict[str, Any]]


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


async def send(store: Store, outgoing: Outgoing, *, stream: str | None = None) -> None:
    """Commit `outgoing` to the outbox (a few milliseconds); the sender delivers it."""
    await asyncio.to_thread(store.enqueue, outgoing, stream=stream)
