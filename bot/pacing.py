"""Answers first: background work waits while requests are waiting for their answer.

An ack to Slack or a 2xx to Alertmanager waits for one store write. The work such requests
start (a runbook, processing a notification) shares the one interpreter and SQLite's single
writer with the next requests, and would make their answers wait. So work starts once no
request has been in flight for `QUIET_S`, or once it has waited `MAX_DEFER_S`, whichever comes
first: a command typed alone starts a few milliseconds after its ack; under a burst the acks
stay at the floor and the work follows within a second. Work already running is not paused.

The cyclic collector is paced the same way (`collect_while_quiet`): the garbage a burst of
work leaves is collected once no request waits, not by the first requests of the next burst.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["IDLE_COLLECT_EVERY_S", "IDLE_COLLECT_FROM", "MAX_DEFER_S", "QUIET_S", "Foreground",
           "collect_while_quiet", "due_generation"]

log = logging.getLogger("opsbot")

#: How long without requests in flight counts as quiet.
QUIET_S = 0.05
#: The most work waits for quiet; past this it starts anyway, so a steady stream of requests
#: delays work by this much and never starves it.
MAX_DEFER_S = 2.0
#: How often `collect_while_quiet` looks at the collector's count.
IDLE_COLLECT_EVERY_S = 0.25
#: Young objects (net allocations since the last collection) worth collecting while quiet:
#: below this a collection costs little wherever it falls.
IDLE_COLLECT_FROM = 1_000


class Foreground:
    """Counts requests in flight (`begin`/`end`, from the event loop) and holds background
    work until they are answered (`call_when_quiet`, `wait_quiet`). One per process."""

    def __init__(self, quiet_s: float = QUIET_S, max_defer_s: float = MAX_DEFER_S) -> None:
        self.quiet_s = quiet_s
        self.max_defer_s = max_defer_s
        self.in_flight = 0
        self._last_end = 0.0
        # (deadline, callback, *its arguments): one tuple per held piece of work, so a burst of
        # acks leaves few objects for the collector to walk (its pauses are the acks' tail).
        self._waiters: deque[tuple[Any, ...]] = deque()
        self._opener: asyncio.Task[None] | None = None

    def begin(self) -> None:
        self.in_flight += 1

    def end(self) -> None:
        self.in_flight -= 1
        self._last_end = time.monotonic()

    def quiet(self) -> bool:
        return self.in_flight == 0 and time.monotonic() - self._last_end >= self.quiet_s

    def call_when_quiet(self, callback: Callable[..., object], *args: Any,
                        asked_at: float | None = None) -> None:
        """Call `callback(*args)` on the loop once no request is in flight and none ended in
        the last `quiet_s`, or once `max_defer_s` have passed since it was asked for
        (`asked_at`, a `time.monotonic()` reading; default now), so a steady stream of
        requests delays work by that much and never slows its pace. At once when quiet
        already. Callbacks run in the order they were asked for; a burst of acks queues one
        tuple each, no task."""
        now = time.monotonic()
        deadline = (now if asked_at is None else asked_at) + self.max_defer_s
        if deadline <= now or (self.quiet() and not self._waiters):
            callback(*args)
            return
        self._waiters.append((deadline, callback, *args))
        if self._opener is None or self._opener.done():
            self._opener = asyncio.get_running_loop().create_task(self._open(),
                                                                  name="opsbot-pacing")

    async def wait_quiet(self, asked_at: float | None = None) -> None:
        """Return when `call_when_quiet` would call."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.call_when_quiet(_release, waiter, asked_at=asked_at)
        await waiter

    async def wait_woken(self, event: asyncio.Event, timeout: float) -> None:
        """A poller's sleep: until `event` is set, or `timeout` passed and no request waits
        (`wait_quiet_or`). A poll the timer starts waits for the requests in flight; one that
        something asked for (`event`) does not."""
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            await self.wait_quiet_or(event)

    async def wait_quiet_or(self, event: asyncio.Event) -> None:
        """Return when `wait_quiet` would, or as soon as `event` is set."""
        if event.is_set():
            return
        quiet = asyncio.ensure_future(self.wait_quiet())
        asked = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait({quiet, asked}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            quiet.cancel()
            asked.cancel()

    async def _open(self) -> None:
        # One task polls for every waiter: hundreds of deferred runs cost one timer, not one
        # each.
        while self._waiters:
            now = time.monotonic()
            quiet = self.quiet()
            while self._waiters and (quiet or self._waiters[0][0] <= now):
                _, callback, *args = self._waiters.popleft()
                try:
                    callback(*args)
                except Exception:  # one failing start must not hold back the others
                    log.exception("starting deferred work failed")
            if self._waiters:
                await asyncio.sleep(min(self.quiet_s, max(0.0, self._waiters[0][0] - now)))


def _release(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def due_generation(count: tuple[int, int, int], threshold: tuple[int, int, int]) -> int:
    """The generation Python's collector goes through when it next runs on its own: the
    oldest whose count passed its threshold (gen 1 counts gen-0 collections, gen 2 counts
    gen-1 ones). Python also holds gen 2 back until enough long-lived objects are new; that
    count is not readable, and a full collection while quiet costs nobody an answer."""
    for generation in (2, 1):
        if count[generation] > threshold[generation]:
            return generation
    return 0


async def collect_while_quiet(foreground: Foreground, every_s: float = IDLE_COLLECT_EVERY_S,
                              least: int = IDLE_COLLECT_FROM) -> None:
    """Run the collection that is building up while no request waits (`foreground.quiet()`),
    once at least `least` young objects wait for it, until cancelled.

    With a high first threshold (`serve`: bot/slack/server.py) a collection goes through
    thousands of objects, a pause of several milliseconds for everything on the loop. Left to
    itself it falls on whatever allocates next: after a burst of work, most often the first
    requests of the next burst, all answered that much later."""
    while True:
        await asyncio.sleep(every_s)
        count = gc.get_count()
        if count[0] >= least and gc.isenabled() and foreground.quiet():
            gc.collect(due_generation(count, gc.get_threshold()))
