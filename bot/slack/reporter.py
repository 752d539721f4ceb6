"""The Slack Reporter: one channel message per execution, updated in place, long output in its
thread, notices as ephemeral replies.

A chat failure never stops or hides an execution: it is logged and counted, and the run goes
on; the store keeps the record either way.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot import messages
from bot.reporting import ExecutionView, Notice
from bot.slack.api import SlackCallFailed, call
from bot.slack.blocks import (
    Block,
    execution_blocks,
    execution_text,
    message_text,
    notice_blocks,
    notice_text,
)
from bot.slack.output import output_messages
from bot.store import Store

__all__ = ["SlackReporter"]

log = logging.getLogger("opsbot.slack")

# postMessage errors meaning "the bot cannot post here", answered with an invite hint.
NOT_POSTABLE = frozenset({"not_in_channel", "channel_not_found", "is_archived"})


class SlackReporter:
    """Reports one trigger's execution and notices to `user` in `channel`."""

    def __init__(
        self,
        client: AsyncWebClient,
        channel: str,
        user: str,
        store: Store,
        thread_ts: str | None = None,
    ) -> None:
        self._client = client
        self._channel = channel
        self._user = user
        self._store = store
        self._thread_ts = thread_ts
        self._ts: str | None = None
        self._unpostable = False
        self._last: tuple[str, list[Block]] | None = None
        self._ended = False
        self._lock = asyncio.Lock()

    @property
    def ts(self) -> str | None:
        """The timestamp of the execution message, once posted."""
        return self._ts

    async def execution(self, view: ExecutionView) -> None:
        async with self._lock:
            if not self._unpostable:
                await self._show(view)
            if view.finished and not self._ended:
                self._ended = True
                await self._end(view)

    async def notice(self, notice: Notice) -> None:
        await self._ephemeral(notice_text(notice), notice_blocks(notice))

    async def _show(self, view: ExecutionView) -> None:
        text, blocks = execution_text(view), execution_blocks(view)
        if self._last == (text, blocks):
            return  # nothing changed; spare the rate limit
        try:
            if self._ts is None:
                await self._post(view, text, blocks)
            else:
                await call("chat.update", self._client.chat_update, channel=self._channel,
                           ts=self._ts, text=text, blocks=blocks)
            self._last = (text, blocks)
        except SlackCallFailed as exc:
            if self._ts is None and exc.error in NOT_POSTABLE:
                self._unpostable = True
                log.info("cannot post %s in %s (%s); answering ephemerally",
                         view.execution_id, self._channel, exc.error)
                await self._ephemeral(message_text(messages.not_in_channel(view.command)))
            else:
                log.warning("reporting %s failed: %s", view.execution_id, exc)

    async def _post(self, view: ExecutionView, text: str, blocks: list[Block]) -> None:
        extra: dict[str, Any] = {"thread_ts": self._thread_ts} if self._thread_ts else {}
        response = await call(
            "chat.postMessage", self._client.chat_postMessage, channel=self._channel, text=text,
            blocks=blocks, unfurl_links=False, unfurl_media=False, **extra,
        )
        self._ts = str(response["ts"])
        self._channel = str(response.get("channel") or self._channel)
        try:
            await asyncio.to_thread(self._store.set_execution_message, view.execution_id,
                                    channel=self._channel, ts=self._ts)
        except Exception:  # the message is up; losing its address only costs the restart note
            log.exception("could not record the message of %s", view.execution_id)

    async def _end(self, view: ExecutionView) -> None:
        """Long output goes to the thread, or (when we cannot post) privately to the asker."""
        if self._unpostable:
            await self._ephemeral(
                f"{message_text(messages.unposted_result())}\n{execution_text(view)}",
                execution_blocks(view))
        elif self._ts is None:
            return  # the message never went up; the failure is logged, the output is stored
        root = self._thread_ts or self._ts
        await self._post_outputs(view, root)
        if not self._unpostable:
            await self._upload_attachments(view, root)

    async def _post_outputs(self, view: ExecutionView, root: str | None) -> None:
        for step in view.steps:
            if not step.output or not step.output.strip():
                continue
            for reply in output_messages(step.name, step.output, view.execution_id):
                if self._unpostable:
                    await self._ephemeral(reply)
                    continue
                try:
                    await call("chat.postMessage", self._client.chat_postMessage,
                               channel=self._channel, thread_ts=root, text=reply,
                               unfurl_links=False, unfurl_media=False)
                except SlackCallFailed as exc:
                    log.warning("output of %s not posted: %s", view.execution_id, exc)
                    return

    async def _upload_attachments(self, view: ExecutionView, root: str | None) -> None:
        """Files the steps produced (graphs) go into the execution's thread; a failed upload
        is logged and counted (`opsbot_slack_api_errors`), never fails the execution."""
        for step in view.steps:
            for attachment in step.attachments:
                try:
                    await call("files.upload_v2", self._client.files_upload_v2,
                               channel=self._channel, thread_ts=root, file=attachment.content,
                               filename=attachment.filename, title=attachment.title,
                               initial_comment=None)
                except SlackCallFailed as exc:
                    log.warning("attachment %s of %s not uploaded: %s", attachment.filename,
                                view.execution_id, exc)

    async def _ephemeral(self, text: str, blocks: list[Block] | None = None) -> None:
        """`text` is mrkdwn, rendered already."""
        extra: dict[str, Any] = {"blocks": blocks} if blocks else {}
        if self._thread_ts:
            extra["thread_ts"] = self._thread_ts
        try:
            await call("chat.postEphemeral", self._client.chat_postEphemeral,
                       channel=self._channel, user=self._user, text=text, **extra)
        except SlackCallFailed as exc:
            log.warning("ephemeral reply to %s in %s failed: %s", self._user, self._channel, exc)
