"""The outbox's sender: delivers stored Slack effects in order per stream, so chat that is slow,
rate limited or down delays only the messages, never the work.

It claims stream heads (a row per stream at a time, leased, so two processes never send the
same row), makes the call, and records the outcome. A 429 pauses the method Slack named for
its `Retry-After`; 5xx, timeouts and lost connections retry on a bounded schedule; a refusal
(`channel_not_found`, `invalid_blocks`, ...) ends the row, sending what it carries `instead`
(the asker's ephemeral copy) when the channel cannot take it. A row still undelivered after
`budget` seconds is dropped with a log line and counted. It runs with `opsbot serve`, wakes
when this process enqueues and on a timer (rows other processes wrote, retries falling due),
and at start delivers what a previous process left.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.metrics import OUTBOX_DELIVERIES, OUTBOX_DEPTH, OUTBOX_OLDEST
from bot.pacing import Foreground
from bot.slack.api import SlackCallFailed, call
from bot.slack.outbox import FALLBACK_ERRORS
from bot.store import Store
from bot.store.outbox import Claimed, MessageAddress, sender_name

__all__ = ["BACKOFF_SECONDS", "SlackSender"]

log = logging.getLogger("opsbot.slack")

BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)  # then 60 s until the budget runs out
PRUNE_EVERY_SECONDS = 600.0
STATS_EVERY_SECONDS = 2.0
_NO_UNFURL = {"unfurl_links": False, "unfurl_media": False}


class _Unaddressable(Exception):
    """The message a row updates, or replies under, was never posted."""

    def __init__(self, method: str, text: str) -> None:
        super().__init__(text)
        self.method = method


@dataclass(frozen=True)
class _Call:
    method: str
    fn: Callable[..., Awaitable[AsyncSlackResponse]]
    kwargs: dict[str, Any]
    posts: str | None = None  # the message key this post creates
    thread_ts: str | None = None


class SlackSender:
    """Delivers the outbox of `store` through `client`; `start` it with the server."""

    def __init__(self, client: AsyncWebClient, store: Store, *, batch: int = 8,
                 poll_seconds: float = 5.0, lease_seconds: float = 60.0,
                 budget_seconds: float = 3600.0, owner: str | None = None,
                 foreground: Foreground | None = None) -> None:
        self._client = client
        self._foreground = foreground or Foreground()  # none: no requests to wait for
        self._store = store
        self._batch = batch
        self._poll = poll_seconds
        self._lease = lease_seconds
        self._budget = budget_seconds
        self.owner = owner or sender_name(store.replica)
        self._paused: dict[str, float] = {}  # API method -> monotonic time it may go again
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()  # deliveries, one per stream at most
        self._stopping = False
        self._unsubscribe: Callable[[], None] | None = None
        self._next_prune = 0.0
        self._next_stats = 0.0
        self._stale = True  # the gauges may be behind the outbox (read at the first pass)
        # When rows put off (retries, pauses) fall due (monotonic times): this sender's, and
        # the next one the store knows of at each refresh of the gauges.
        self._due: list[float] = []

    # -- running ------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is not None:
            return
        loop = asyncio.get_running_loop()

        def enqueued() -> None:  # called from the store's worker threads
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._wake.set)

        self._unsubscribe = self._store.on_enqueue(enqueued)
        self._stopping = False
        self._task = loop.create_task(self._loop(), name="opsbot-slack-sender")

    async def stop(self, grace: float = 10.0) -> None:
        """Deliver what can go within `grace` seconds; the rest waits in the store."""
        if self._task is None:
            return
        self._stopping = True
        self._wake.set()
        _, pending = await asyncio.wait({self._task}, timeout=grace)
        if pending:
            for task in {self._task, *self._inflight}:
                task.cancel()  # a row cut off mid-call is tried again when its lease ends
            await asyncio.gather(self._task, *self._inflight, return_exceptions=True)
        self._task = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            claiming = time.monotonic()
            claimed = await self._claim()
            if self._stopping and not claimed and not self._inflight:
                return
            self._stale = self._stale or bool(claimed)
            if self._stale and time.monotonic() >= self._next_stats:
                await self._refresh_stats()
            # Until a row falls due, a delivery ends (its stream's next row may go; its end
            # sets the wake, also while this claim ran) or this process enqueues. The timer's
            # poll waits until no request does (bot/pacing.py), 2 s at most; an enqueue goes at
            # once. Gauges behind what was sent are refreshed within STATS_EVERY_SECONDS.
            wait = self._until_due(claiming)
            if self._stale:
                wait = min(wait, max(0.05, self._next_stats - time.monotonic()))
            await self._foreground.wait_woken(self._wake, wait)

    async def _claim(self) -> int:
        """Claim due stream heads for the free delivery slots and start delivering them:
        rows of different streams go concurrently, so one slow call holds up only its own
        stream."""
        free = self._batch - len(self._inflight)
        if free <= 0:
            return 0
        try:
            rows = await asyncio.to_thread(self._store.claim_outgoing, self.owner, limit=free,
                                           lease_seconds=self._lease)
        except Exception:  # the store is down: the rows wait on disk
            log.exception("claiming Slack outbox rows failed; retrying")
            return 0
        loop = asyncio.get_running_loop()
        for row in rows:
            task = loop.create_task(self._deliver_safely(row), name=f"opsbot-slack-{row.id}")
            self._inflight.add(task)
            task.add_done_callback(self._delivered)
        return len(rows)

    def _delivered(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._stale = True
        self._wake.set()

    async def _deliver_safely(self, row: Claimed) -> None:
        try:
            await self._deliver(row)
        except Exception:  # its lease runs out, then it is tried again
            log.exception("Slack outbox row %d (%s) could not be handled", row.id, row.kind)

    def _until_due(self, claimed_at: float) -> float:
        """Seconds until the next row put off falls due, as this sender knows (its own, and
        what the store said at the last refresh), at most the poll interval. The ones due by
        `claimed_at`, when the last claim began, were claimed then or wait behind a row
        being sent, whose end wakes the loop."""
        while self._due and self._due[0] <= claimed_at:
            heapq.heappop(self._due)
        if not self._due:
            return self._poll
        return min(self._poll, max(0.05, self._due[0] - time.monotonic()))

    async def _refresh_stats(self) -> None:
        """Refresh the gauges (every second or two, also while busy) and now and then prune
        what was delivered long ago."""
        self._next_stats = time.monotonic() + STATS_EVERY_SECONDS
        self._stale = False
        try:
            stats = await asyncio.to_thread(self._store.outbox_stats)
            if time.monotonic() >= self._next_prune:
                self._next_prune = time.monotonic() + PRUNE_EVERY_SECONDS
                await asyncio.to_thread(self._store.prune_outbox)
        except Exception:
            log.exception("reading the Slack outbox failed")
            return
        OUTBOX_DEPTH.set(stats.waiting)
        OUTBOX_OLDEST.set(stats.oldest_seconds)
        if stats.next_due_seconds is not None:  # also rows put off by another process
            heapq.heappush(self._due, time.monotonic() + max(0.0, stats.next_due_seconds))

    # -- one row ------------------------------------------------------------------------------

    async def _deliver(self, row: Claimed) -> None:
        try:
            plan = await self._plan(row)
        except _Unaddressable as exc:
            await self._replace(row, exc.method, str(exc))
            return
        if row.age_seconds > self._budget:
            log.warning("Slack %s for %s dropped: not delivered within %.0f s (last error: %s)",
                        plan.method, row.stream, self._budget, row.last_error)
            await self._finish(row, plan.method, "dropped", error=row.last_error)
            return
        paused = self._paused.get(plan.method, 0.0) - time.monotonic()
        if paused > 0:  # Slack asked this method to wait: keep to it, costing no attempt
            await self._put_off(row, paused, row.last_error, counted=False)
            return
        try:
            response = await call(plan.method, plan.fn, **plan.kwargs)
        except SlackCallFailed as exc:
            await self._failed(row, plan, exc)
            return
        message = None
        if plan.posts is not None:
            channel = str(response.get("channel") or plan.kwargs["channel"])
            message = MessageAddress(plan.posts, channel, str(response["ts"]), plan.thread_ts)
        if row.substituted and row.instead:  # one replacement sent; the next one now
            await self._substitute(row, plan.method, None, "delivered")
        else:
            await self._finish(row, plan.method, "delivered", message=message)

    async def _failed(self, row: Claimed, plan: _Call, exc: SlackCallFailed) -> None:
        if exc.retry_after is not None:
            self._paused[plan.method] = time.monotonic() + exc.retry_after
            log.info("Slack rate limits %s: pausing it for %.1f s", plan.method, exc.retry_after)
            await self._retry(row, plan.method, exc.retry_after, exc.error, "rate_limited")
            return
        if exc.transient:
            base = BACKOFF_SECONDS[min(row.attempts, len(BACKOFF_SECONDS)) - 1]
            delay = base * random.uniform(0.8, 1.0)  # spread the retries of many rows
            log.info("Slack %s for %s failed (%s); retrying in %.1f s", plan.method, row.stream,
                     exc.error, delay)
            await self._retry(row, plan.method, delay, exc.error, "retried")
            return
        # Refused for good. A message that could not be posted never will be: later rows
        # about it (its updates, its thread) learn so from its address.
        message = MessageAddress(plan.posts, error=exc.error) if plan.posts else None
        if row.instead and (row.substituted or exc.error in FALLBACK_ERRORS):
            log.info("Slack %s in %s refused (%s); sending its replacement instead",
                     plan.method, row.payload.get("channel"), exc.error)
            await self._substitute(row, plan.method, exc.error, "substituted", message=message)
        else:
            log.warning("Slack %s for %s failed for good: %s", plan.method, row.stream,
                        exc.error)
            await self._finish(row, plan.method, "failed", error=exc.error, message=message)

    async def _replace(self, row: Claimed, method: str, error: str) -> None:
        """The message the row updates or replies under was never posted: its replacement
        goes instead, if it has one; otherwise it is skipped."""
        if row.instead:
            await self._substitute(row, method, error, "substituted")
            return
        log.debug("Slack %s for %s skipped: %s", method, row.stream, error)
        await self._finish(row, method, "skipped", error=error)

    async def _substitute(self, row: Claimed, method: str, error: str | None, outcome: str, *,
                          message: MessageAddress | None = None) -> None:
        await asyncio.to_thread(self._store.substitute_outgoing, row.id, self.owner,
                                error=error, message=message)
        self._count(method, outcome)

    async def _retry(self, row: Claimed, method: str, delay: float, error: str,
                     outcome: str) -> None:
        await self._put_off(row, delay, error)
        self._count(method, outcome)

    async def _put_off(self, row: Claimed, delay: float, error: str | None, *,
                       counted: bool = True) -> None:
        """The row waits `delay` seconds; the loop wakes when it falls due."""
        await asyncio.to_thread(self._store.retry_outgoing, row.id, self.owner, delay=delay,
                                error=error, counted=counted)
        heapq.heappush(self._due, time.monotonic() + delay)

    async def _finish(self, row: Claimed, method: str, outcome: str, *,
                      error: str | None = None, message: MessageAddress | None = None) -> None:
        status = "failed" if outcome == "skipped" else outcome
        await asyncio.to_thread(self._store.finish_outgoing, row.id, self.owner, status,
                                error=error, message=message)
        self._count(method, outcome)

    @staticmethod
    def _count(method: str, outcome: str) -> None:
        OUTBOX_DELIVERIES.labels(method=method, outcome=outcome).inc()

    # -- what to call -------------------------------------------------------------------------

    async def _plan(self, row: Claimed) -> _Call:
        p = dict(row.payload)
        client = self._client
        if row.kind == "show":
            return await self._show(row, p)
        if row.kind == "post":
            thread_ts = await self._thread(row, p, "chat.postMessage")
            if not thread_ts:
                p.pop("reply_broadcast", None)  # a broadcast is for replies only
            return _Call("chat.postMessage", client.chat_postMessage,
                         _message_args(p, thread_ts) | _NO_UNFURL)
        if row.kind == "ephemeral":
            return _Call("chat.postEphemeral", client.chat_postEphemeral, dict(p))
        if row.kind == "upload":
            thread_ts = await self._thread(row, p, "files.upload_v2")
            return _Call("files.upload_v2", client.files_upload_v2, {
                "channel": p["channel"], "thread_ts": thread_ts, "file": row.content,
                "filename": p["filename"], "title": p.get("title"), "initial_comment": None})
        raise _Unaddressable(row.kind, f"unknown outbox row kind {row.kind!r}")

    async def _show(self, row: Claimed, p: dict[str, Any]) -> _Call:
        client = self._client
        fields = {"text": p["text"], "blocks": p.get("blocks") or []}
        if p.get("ts"):
            return _Call("chat.update", client.chat_update,
                         {"channel": p["channel"], "ts": p["ts"]} | fields)
        assert row.key is not None, "a show names its message"
        where = await asyncio.to_thread(self._store.message_address, row.key)
        if where is not None and where.ts and where.channel:
            return _Call("chat.update", client.chat_update,
                         {"channel": where.channel, "ts": where.ts} | fields)
        if where is not None:
            raise _Unaddressable("chat.update", f"{row.key} was not posted ({where.error})")
        thread_ts = await self._thread(row, p, "chat.postMessage")
        return _Call("chat.postMessage", client.chat_postMessage,
                     _message_args(p, thread_ts) | _NO_UNFURL, posts=row.key,
                     thread_ts=thread_ts)

    async def _thread(self, row: Claimed, p: dict[str, Any], method: str) -> str | None:
        """The thread a post goes in: its own `thread_ts`, else its parent message's."""
        if p.get("thread_ts") or row.parent is None:
            return p.get("thread_ts")
        parent = await asyncio.to_thread(self._store.message_address, row.parent)
        if parent is not None and parent.root:
            return parent.root
        if row.orphan == "top":
            return None
        raise _Unaddressable(method, f"{row.parent} was not posted")


def _message_args(p: dict[str, Any], thread_ts: str | None) -> dict[str, Any]:
    args = {k: v for k, v in p.items() if k not in ("ts", "thread_ts")}
    if thread_ts:
        args["thread_ts"] = thread_ts
    return args
