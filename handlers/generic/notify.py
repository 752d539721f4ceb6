"""`notify`: a message to a channel (a heads-up to #platform, a status page team). The handler
never calls Slack: its Result carries an Announcement, which the Slack reporter writes to the
outbox for that channel and the console prints."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from bot import messages
from bot.registry import Announcement, HandlerContext, Params, Result, handler

__all__ = ["NotifyParams", "notify"]

# `#name` as Slack spells channel names, or a channel id (C…, G… for private ones).
_CHANNEL = re.compile(r"#[a-z0-9][a-z0-9._-]{0,79}|[CG][A-Z0-9]{8,}")
LONGEST_TEXT = 3000


class NotifyParams(Params):
    channel: str  # `#platform` or a channel id
    text: str = Field(min_length=1, max_length=LONGEST_TEXT)

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str) -> str:
        if not _CHANNEL.fullmatch(value):
            raise ValueError(f"`{value[:80]}` is not a channel: write `#name` or a channel id")
        return value


@handler("notify", params=NotifyParams)
async def notify(*, ctx: HandlerContext, params: NotifyParams, **_: object) -> Result:
    """Post a message to a channel (through the chat front end, never from here)."""
    field = ((messages.notify_channel_field(), params.channel),)
    if ctx.dry_run:
        return Result(summary=messages.would_notify(params.channel), fields=field,
                      output=params.text)
    ctx.log.info("message for %s (%d characters)", params.channel, len(params.text))
    return Result(summary=messages.notified(params.channel), fields=field,
                  announcements=(Announcement(params.channel, params.text),))
