"""`wait`: pause a runbook for a bounded time (let a change settle before the next check); a
`cancel <execution-id>` ends the wait early, and the runner stops before the next step."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from pydantic import field_validator

from bot import messages
from bot.errors import UsageError
from bot.numbers import parse_duration
from bot.registry import HandlerContext, Params, Result, handler

__all__ = ["LONGEST_WAIT", "WaitParams", "wait"]

LONGEST_WAIT = timedelta(hours=1)
_POLL_SECONDS = 2.0  # how often a wait asks whether it was cancelled


class WaitParams(Params):
    duration: str  # `30s`, `5m`, at most 1h
    reason: str = ""

    @field_validator("duration")
    @classmethod
    def _bounded(cls, value: str) -> str:
        try:
            parse_duration(value, shortest=timedelta(seconds=1), longest=LONGEST_WAIT,
                           what="`duration`")
        except UsageError as exc:
            raise ValueError(str(exc)) from None
        return value

    @property
    def seconds(self) -> float:
        return parse_duration(self.duration).total_seconds()


@handler("wait", params=WaitParams)
async def wait(*, ctx: HandlerContext, params: WaitParams, **_: object) -> Result:
    """Wait a bounded time (at most 1h); a cancel ends the wait early."""
    fields = ((messages.wait_reason_field(), params.reason),) if params.reason else ()
    if ctx.dry_run:
        return Result(summary=messages.would_wait(params.duration), fields=fields,
                      data={"seconds": params.seconds})
    await ctx.progress(messages.waiting(params.duration, params.reason))
    end = time.monotonic() + params.seconds
    while (left := end - time.monotonic()) > 0:
        await asyncio.sleep(min(left, _POLL_SECONDS))
        who = await ctx.records.cancel_requested(ctx.execution_id)
        if who is not None:
            ctx.log.info("wait of %s ended early: cancel asked", params.duration)
            return Result(summary=messages.wait_cut_short(params.duration), fields=fields,
                          data={"seconds": params.seconds, "cancelled": True})
    return Result(summary=messages.waited(params.duration), fields=fields,
                  data={"seconds": params.seconds, "cancelled": False})
