"""The Slack alert board: one message per Alertmanager group in the alerts channel, updated in
place; automatic runs report in its thread, and their notices go to the thread too (there is
no person to tell privately).

Everything goes through the outbox, in one stream per group (its message, its updates, its
runs' messages, in order), so an alert or an automatic remediation never waits on Slack; the
sender records the message's ts on the group when it is posted.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

from bot.alerts.view import AlertGroupView
from bot.markup import plain
from bot.reporting import ExecutionView, Notice, Reporter
from bot.slack.blocks import alert_group_blocks, alert_group_text, message_text, notice_text
from bot.slack.outbox import post, send, send_all, show
from bot.slack.reporter import SlackReporter
from bot.store import Store
from bot.store.outbox import alert_group_key

__all__ = ["SlackAlertBoard", "channel_reporter"]

log = logging.getLogger("opsbot.slack")


class SlackAlertBoard:
    """Implements `bot.alerts.view.AlertBoard` on the Slack Web API, through the outbox."""

    def __init__(self, store: Store, channel: str | None) -> None:
        self._store = store
        self._channel = channel  # settings.alerts.channel
        self._warned = False

    async def show(self, *views: AlertGroupView) -> None:
        items = []
        for view in views:
            key = alert_group_key(view.group_hash)
            text, blocks = alert_group_text(view), alert_group_blocks(view)
            if view.channel and view.ts:
                outgoing = show(key, channel=view.channel, ts=view.ts, text=text, blocks=blocks)
            elif self._channel:
                outgoing = show(key, channel=self._channel, text=text, blocks=blocks)
            else:
                if not self._warned:
                    self._warned = True
                    log.warning("alerts are recorded but not posted: set alerts.channel")
                continue
            items.append((outgoing, key))
            await asyncio.sleep(0)  # a request waiting for the loop goes between two renders
        await send_all(self._store, items)

    def reporter(self, view: AlertGroupView) -> Reporter:
        key = alert_group_key(view.group_hash)
        return _ThreadRun(self._store, view.channel or self._channel, thread_ts=view.ts,
                          parent=None if view.ts else key, stream=key)

    async def announce(self, view: AlertGroupView, text: str) -> None:
        channel = view.channel or self._channel
        if not channel:
            return
        key = alert_group_key(view.group_hash)
        await send(self._store, post(channel=channel, text=message_text(text), thread_ts=view.ts,
                                     parent=None if view.ts else key, orphan="top",
                                     broadcast=True), stream=key)


class _ThreadRun:
    """A run nobody typed: the execution message is a reply in the thread `thread_ts` (or of
    the message `parent`, once posted; in the channel if it never is), and so are its
    notices."""

    def __init__(self, store: Store, channel: str | None, *, thread_ts: str | None,
                 parent: str | None, stream: str | None) -> None:
        self._store = store
        self._channel = channel
        self._thread_ts = thread_ts
        self._parent = parent
        self._stream = stream or f"report:{secrets.token_hex(8)}"  # notices with the run
        self._inner = SlackReporter(store, channel, "", thread_ts=thread_ts, parent=parent,
                                    orphan="top", stream=self._stream) if channel else None

    async def execution(self, view: ExecutionView) -> None:
        if self._inner is not None:
            await self._inner.execution(view)

    async def notice(self, notice: Notice) -> None:
        if not self._channel:
            log.info("automatic run notice (no alerts channel): %s", plain(notice.text))
            return
        await send(self._store, post(channel=self._channel, text=notice_text(notice),
                                     thread_ts=self._thread_ts, parent=self._parent,
                                     orphan="top"), stream=self._stream)


def channel_reporter(store: Store, channel: str | None) -> Reporter:
    """Reports a run nobody typed (a scheduled check) as a message in `channel`; without a
    channel it is only recorded and logged."""
    return _ThreadRun(store, channel, thread_ts=None, parent=None, stream=None)
