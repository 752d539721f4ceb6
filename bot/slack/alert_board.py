"""The Slack alert board: one message per Alertmanager group in the alerts channel, updated in
place; automatic runs report in its thread, and their notices go to the thread too (there is
no person to tell privately).

A chat failure never loses an alert: the store holds the group, the failure is logged and
counted, and the next change of the group tries again.
"""

from __future__ import annotations

import logging

from slack_sdk.web.async_client import AsyncWebClient

from bot.alerts.view import AlertGroupView
from bot.markup import plain
from bot.reporting import ExecutionView, Notice, Reporter
from bot.slack.api import SlackCallFailed, call, show_message
from bot.slack.blocks import alert_group_blocks, alert_group_text, message_text, notice_text
from bot.slack.reporter import SlackReporter
from bot.store import Store

__all__ = ["SlackAlertBoard", "channel_reporter"]

log = logging.getLogger("opsbot.slack")


class SlackAlertBoard:
    """Implements `bot.alerts.view.AlertBoard` on the Slack Web API."""

    def __init__(self, client: AsyncWebClient, store: Store, channel: str | None) -> None:
        self._client = client
        self._store = store
        self._channel = channel  # settings.alerts.channel
        self._warned = False

    async def show(self, view: AlertGroupView) -> tuple[str, str] | None:
        if not (view.channel and view.ts) and not self._channel:
            if not self._warned:
                self._warned = True
                log.warning("alerts are recorded but not posted: set alerts.channel")
            return None
        try:
            return await show_message(self._client, alert_group_text(view),
                                      alert_group_blocks(view), at=(view.channel, view.ts),
                                      post_to=self._channel)
        except SlackCallFailed as exc:
            log.warning("alert group %s not shown: %s", view.group_hash[:12], exc)
            return None

    def reporter(self, view: AlertGroupView) -> Reporter:
        return _AlertRun(self._client, self._store, view.channel or self._channel, view.ts)

    async def announce(self, view: AlertGroupView, text: str) -> None:
        channel = view.channel or self._channel
        if not channel:
            return
        extra = {"thread_ts": view.ts, "reply_broadcast": True} if view.ts else {}
        try:
            await call("chat.postMessage", self._client.chat_postMessage, channel=channel,
                       text=message_text(text), unfurl_links=False, unfurl_media=False, **extra)
        except SlackCallFailed as exc:
            log.warning("announcement in %s failed: %s", channel, exc)


class _AlertRun:
    """An automatic run's reporter: the execution message is a reply in the group's thread."""

    def __init__(self, client: AsyncWebClient, store: Store, channel: str | None,
                 thread_ts: str | None) -> None:
        self._client = client
        self._channel = channel
        self._thread_ts = thread_ts
        self._inner = SlackReporter(client, channel, "", store, thread_ts=thread_ts) \
            if channel else None

    async def execution(self, view: ExecutionView) -> None:
        if self._inner is not None:
            await self._inner.execution(view)

    async def notice(self, notice: Notice) -> None:
        if not self._channel:
            log.info("automatic run notice (no alerts channel): %s", plain(notice.text))
            return
        extra = {"thread_ts": self._thread_ts} if self._thread_ts else {}
        try:
            await call("chat.postMessage", self._client.chat_postMessage, channel=self._channel,
                       text=notice_text(notice), unfurl_links=False, unfurl_media=False,
                       **extra)
        except SlackCallFailed as exc:
            log.warning("automatic run notice not posted: %s", exc)


def channel_reporter(client: AsyncWebClient, store: Store, channel: str | None) -> Reporter:
    """Reports a run nobody typed (a scheduled check) as a message in `channel`; without a
    channel it is only recorded and logged."""
    return _AlertRun(client, store, channel, None)
