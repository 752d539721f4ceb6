"""The Slack approval board: a request is one channel message, updated in place as it is
decided; the requester hears about their request privately; an approved change runs in the
request's thread.

A chat failure never undoes a decision: the store holds it, the failure is logged and counted.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.approvals.view import ApprovalView
from bot.reporting import ExecutionView, Notice, Reporter
from bot.slack.api import SlackCallFailed, call, show_message
from bot.slack.blocks import (
    approval_blocks,
    approval_text,
    message_text,
    notice_blocks,
    notice_text,
)
from bot.slack.reporter import SlackReporter
from bot.store import Store

__all__ = ["SlackBoard"]

log = logging.getLogger("opsbot.slack")


class SlackBoard:
    """Implements `bot.approvals.board.Board` on the Slack Web API."""

    def __init__(self, client: AsyncWebClient, store: Store,
                 loud_channel: str | None = None) -> None:
        self._client = client
        self._store = store
        self._loud_channel = loud_channel  # settings.break_glass_channel

    async def show(self, view: ApprovalView) -> tuple[str, str] | None:
        try:
            # Without a channel it was asked outside Slack: approvers use `/ops approve <id>`.
            return await show_message(self._client, approval_text(view), approval_blocks(view),
                                      at=(view.channel, view.ts), post_to=view.channel)
        except SlackCallFailed as exc:
            log.warning("request %s not shown in %s: %s", view.request_id, view.channel, exc)
            return None

    async def tell(self, user: str, view: ApprovalView, notice: Notice) -> None:
        """Ephemeral in the request's channel; a direct message when there is none, or when
        the person cannot see that channel any more."""
        # These notices quote other people's words (a denial's reason, the command): rendered
        # as values, so a reason cannot ping a channel, hide a link or format.
        text, blocks = notice_text(notice), notice_blocks(notice)
        if view.channel:
            try:
                await call("chat.postEphemeral", self._client.chat_postEphemeral,
                           channel=view.channel, user=user, text=text, blocks=blocks)
                return
            except SlackCallFailed as exc:
                log.info("ephemeral to %s in %s failed (%s); sending a direct message",
                         user, view.channel, exc.error)
        try:
            # A user id as the channel posts in the app's direct conversation with them.
            await call("chat.postMessage", self._client.chat_postMessage, channel=user,
                       text=text, blocks=blocks, unfurl_links=False, unfurl_media=False)
        except SlackCallFailed as exc:
            log.warning("could not tell %s about request %s: %s", user, view.request_id, exc)

    def reporter(self, view: ApprovalView) -> Reporter:
        return _ApprovedRun(self._client, self._store, view)

    async def announce(self, view: ApprovalView, text: str) -> None:
        """Break-glass: a loud message in the configured channel, and in the request's own."""
        channels = [c for c in (self._loud_channel, view.channel) if c]
        for channel in dict.fromkeys(channels):
            try:
                await call("chat.postMessage", self._client.chat_postMessage, channel=channel,
                           text=message_text(text), unfurl_links=False, unfurl_media=False)
            except SlackCallFailed as exc:
                log.warning("break-glass announcement to %s failed: %s", channel, exc)


class _ApprovedRun:
    """The approved execution's reporter: its message is a reply under the request message
    (or a direct message to the requester when the request has no channel); its notices go
    to the requester, whose change it is."""

    def __init__(self, client: AsyncWebClient, store: Store, view: ApprovalView) -> None:
        self._client = client
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
                extra: dict[str, Any] = {}
                channel = self._view.channel
                if channel and self._view.ts:
                    extra["thread_ts"] = self._view.ts
                self._inner = SlackReporter(self._client, channel or requester, requester,
                                            self._store, **extra)
            return self._inner

    async def execution(self, view: ExecutionView) -> None:
        await (await self._reporter()).execution(view)

    async def notice(self, notice: Notice) -> None:
        await (await self._reporter()).notice(notice)
