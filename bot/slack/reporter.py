"""The Slack Reporter: one channel message per execution, updated in place, long output in its
thread, notices as ephemeral replies.

Every report is a row in the outbox (outbox.py), delivered by the sender: reporting costs the
run a short commit, never a Slack call, so a slow or absent Slack delays the messages and not
the work. Where the bot cannot post, the asker gets the news privately instead.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

from slack_sdk.web.async_client import AsyncWebClient

from bot import messages
from bot.reporting import ExecutionView, Notice
from bot.slack.blocks import (
    Block,
    execution_blocks,
    execution_text,
    message_text,
    notice_blocks,
    notice_text,
    post_checklist_blocks,
)
from bot.slack.outbox import ephemeral, post, send, show, upload
from bot.slack.output import output_messages
from bot.store import Store, StoreError
from bot.store.outbox import Orphan, Outgoing, execution_key

__all__ = ["FINAL_RETRY", "SlackReporter"]

log = logging.getLogger("opsbot.slack")

#: A run's final message the outbox could not take is offered to it again: after the first
#: wait, then twice as long each time up to the longest, for at most the last figure (s).
FINAL_RETRY = (1.0, 30.0, 3600.0)

# Those offers, kept referenced until they end (the loop holds tasks weakly).
_OFFERS: set[asyncio.Task[None]] = set()


class SlackReporter:
    """Reports one trigger's execution and notices to `user` in `channel`: in the thread
    `thread_ts`, or under the message `parent` once it is posted (`orphan="top"`: in the
    channel if it never is). Its rows form one outbox `stream`, delivered in order."""

    def __init__(
        self,
        store: Store,
        channel: str,
        user: str,
        *,
        thread_ts: str | None = None,
        parent: str | None = None,
        orphan: Orphan = "drop",
        stream: str | None = None,
        direct: AsyncWebClient | None = None,
        final_retry: tuple[float, float, float] = FINAL_RETRY,
    ) -> None:
        self._store = store
        self._direct = direct  # for replies the outbox cannot take (see outbox.send)
        self._channel = channel
        self._user = user
        self._thread_ts = thread_ts
        self._parent = parent
        self._orphan = orphan
        self._stream = stream or f"report:{secrets.token_hex(8)}"
        self._last: tuple[str, list[Block]] | None = None
        self._ended = False
        self._announced: set[tuple[str, int]] = set()  # (execution, step) messages sent
        self._lock = asyncio.Lock()
        self._final_retry = final_retry

    async def execution(self, view: ExecutionView) -> None:
        async with self._lock:
            text, blocks = execution_text(view), execution_blocks(view)
            if self._last != (text, blocks):  # unchanged: spare the rate limit
                # If the channel refuses the message: tell the asker why once, and show
                # them the result privately at the end.
                instead = [
                    self._private(message_text(messages.not_in_channel(view.command)))
                    if self._last is None else None,
                    self._private(f"{message_text(messages.unposted_result())}\n{text}", blocks)
                    if view.finished else None,
                ]
                message = show(
                    execution_key(view.execution_id), channel=self._channel, text=text,
                    blocks=blocks, thread_ts=self._thread_ts, parent=self._parent,
                    orphan=self._orphan, instead=[i for i in instead if i is not None])
                try:
                    await self._send(message)
                except (StoreError, TimeoutError):
                    if view.finished:
                        await self._result_directly(text, blocks)
                        self._offer_later(message, (text, blocks), view)
                    raise
                self._last = (text, blocks)
            await self._announce(view)
            if view.finished and not self._ended:
                self._ended = True
                await self._end(view)

    async def _result_directly(self, text: str, blocks: list[Block]) -> None:
        """The outbox could not take a run's final message (the database did not answer):
        the asker gets the result privately, straight from Slack if the outbox still cannot
        take it (`send`'s fallback for ephemeral replies), rather than nothing."""
        private = self._private(f"{message_text(messages.unrecorded_result())}\n{text}", blocks)
        if private is None or self._direct is None:
            return
        try:
            await send(self._store, private, direct=self._direct)
        except Exception:  # nothing more can be done from here; the caller logs its failure
            log.exception("the result could not be shown to %s either", self._user)

    def _offer_later(self, message: Outgoing, shown: tuple[str, list[Block]],
                     view: ExecutionView) -> None:
        """Offer the final message to the outbox again in the background until the database
        answers (`final_retry`), then what follows it (announcements, output, files): the
        channel's message ends in the run's final state, as the asker was told privately."""
        task = asyncio.get_running_loop().create_task(
            self._final_when_stored(message, shown, view, self._last),
            name=f"opsbot final {view.execution_id}")
        _OFFERS.add(task)
        task.add_done_callback(_OFFERS.discard)

    async def _final_when_stored(self, message: Outgoing, shown: tuple[str, list[Block]],
                                 view: ExecutionView,
                                 before: tuple[str, list[Block]] | None) -> None:
        wait, longest, give_up_after = self._final_retry
        loop = asyncio.get_running_loop()
        deadline = loop.time() + give_up_after
        while True:
            await asyncio.sleep(wait)
            try:
                async with self._lock:
                    if self._last != before:
                        return  # a later state of the message was recorded meanwhile
                    await self._send(message)
                    # Shown: should what follows fail, the next offer goes on from here (the
                    # message is updated in place again, announcements are not repeated).
                    self._last = before = shown
                    await self._announce(view)
                    if not self._ended:
                        self._ended = True
                        await self._end(view)
            except (StoreError, TimeoutError) as exc:
                if loop.time() + wait >= deadline:
                    log.error("the final message of %s was never recorded (%s); the asker "
                              "had it privately", view.execution_id, type(exc).__name__)
                    return
                wait = min(wait * 2, longest)
                continue
            log.info("the final message of %s is recorded now that the database answers",
                     view.execution_id)
            return

    async def _announce(self, view: ExecutionView) -> None:
        """What `notify` steps sent to channels, each posted once as soon as its step ends (a
        channel the bot cannot post in: the asker is told privately instead)."""
        for index, step in enumerate(view.steps):
            if not step.announcements or (view.execution_id, index) in self._announced:
                continue
            self._announced.add((view.execution_id, index))
            for note in step.announcements:
                text = message_text(messages.announcement(note.text, view.execution_id,
                                                          view.runbook, view.actor))
                private = self._private(message_text(messages.not_announced(note.channel)))
                await self._send(post(channel=note.channel, text=text,
                                      instead=[private] if private else []))

    async def notice(self, notice: Notice) -> None:
        private = self._private(notice_text(notice), notice_blocks(notice))
        if private is not None:
            await self._send(private)

    async def _end(self, view: ExecutionView) -> None:
        """Long output as replies in the message's thread (privately to the asker if it could
        not be posted), then the files the steps produced (graphs)."""
        key = execution_key(view.execution_id)
        for step in view.steps:
            if not step.output or not step.output.strip():
                continue
            for reply in output_messages(step.name, step.output, view.execution_id):
                private = self._private(reply)
                await self._send(post(channel=self._channel, text=reply, parent=key,
                                      instead=[private] if private else []))
        for step in view.steps:
            for attachment in step.attachments:
                await self._send(upload(channel=self._channel, parent=key,
                                        content=attachment.content,
                                        filename=attachment.filename, title=attachment.title))
        if view.checklist and view.status == "succeeded":
            headline = messages.post_checklist_headline(view.actor)
            await self._send(post(channel=self._channel, text=message_text(headline),
                                  blocks=post_checklist_blocks(view.execution_id, view.actor,
                                                               view.checklist),
                                  parent=key))

    def _private(self, text: str, blocks: list[Block] | None = None) -> Outgoing | None:
        """An ephemeral reply to the asker (none when nobody asked: an automatic run)."""
        if not self._user:
            return None
        return ephemeral(channel=self._channel, user=self._user, text=text, blocks=blocks,
                         thread_ts=self._thread_ts)

    async def _send(self, outgoing: Outgoing) -> None:
        await send(self._store, outgoing, stream=self._stream, direct=self._direct)
