"""The Slack approval board: a request is one channel message, updated in place as it is
decided; the requester hears about their request privately; an approved change runs in the
request's thread.

Everything goes through the outbox, in one stream per request (its message first, then its
updates, notices and the approved run's messages, in order), so a decision never waits on
Slack; the sender records the message's ts on the request when it is posted.
"""

from __future__ import annotations

import asyncio

from bot.approvals.view import ApprovalView
from bot.reporting import ExecutionView, Notice, Reporter
from bot.slack.blocks import (
    approval_blocks,
    approval_text,
    message_text,
    notice_blocks,
    notice_text,
)
from bot.slack.outbox import ephemeral, post, send, show
from bot.slack.reporter import SlackReporter
from bot.store import Store
from bot.store.outbox import request_key

__all__ = ["SlackBoard"]


class SlackBoard:
    """Implements `bot.approvals.board.Board` on the Slack Web API, through the outbox."""

    def __init__(self, store: Store, loud_channel: str | None = None) -> None:
        self._store = store
        self._loud_channel = loud_channel  # settings.break_glass_channel

    async def show(self, view: ApprovalView) -> None:
        # Without a channel it was asked outside Slack: approvers use `/ops approve <id>`.
        if view.channel:
            key = request_key(view.request_id)
            await send(self._store, show(key, channel=view.channel, text=approval_text(view),
                                         blocks=approval_blocks(view), ts=view.ts), stream=key)

    async def tell(self, user: str, view: ApprovalView, notice: Notice) -> None:
        """Ephemeral in the request's channel; a direct message when there is none, or when
        the person cannot see that channel any more."""
        # These notices quote other people's words (a denial's reason, the command): rendered
        # as values, so a reason cannot ping a channel, hide a link or format.
        text, blocks = notice_text(notice), notice_blocks(notice)
        # A user id as the channel posts in the app's direct conversation with them.
        direct = post(channel=user, text=text, blocks=blocks)
        outgoing = ephemeral(channel=view.channel, user=user, text=text, blocks=blocks,
                             instead=[direct]) if view.channel else direct
        await send(self._store, outgoing, stream=request_key(view.request_id))

    def reporter(self, view: ApprovalView) -> Reporter:
        return _ApprovedRun(self._store, view)

    async def announce(self, view: ApprovalView, text: str) -> None:
        """Break-glass: a loud message in the configured channel, and in the request's own."""
        channels = [c for c in (self._loud_channel, view.channel) if c]
        for channel in dict.fromkeys(channels):
            await send(self._store, post(channel=channel, text=message_text(text)),
                       stream=request_key(view.request_id))


class _ApprovedRun:
    """The approved execution's reporter: its message is a reply under the request message
    (or a direct message to the requester when the request has no channel); its notices go
    to the requester, whose change it is. Its rows follow the request's in one stream."""

    def __init__(self, store: Store, view: ApprovalView) -> None:
        self._store = store
        self._view = view
        self._inner: SlackReporter | None = None
        self._lock = asyncio.Lock()

    async def _reporter(self) -> SlackReporter:
        async with self._lock:
            if self._inner is None:
                # The view names people for display; the store has the requester's id.
                request = await asyncio.to_thread(self._store.get_request, self._view.request_id)
                requester = request.requester if request is not None else ""
                channel, key = self._view.channel, request_key(self._view.request_id)
                self._inner = SlackReporter(
                    self._store, channel or requester, requester,
                    thread_ts=self._view.ts if channel else None,
                    # The request message may still be on its way: reply once it is posted.
                    parent=key if channel and not self._view.ts else None,
                    orphan="top", stream=key)
            return self._inner

    async def execution(self, view: ExecutionView) -> None:
        await (await self._reporter()).execution(view)

    async def notice(self, notice: Notice) -> None:
        await (await self._reporter()).notice(notice)
