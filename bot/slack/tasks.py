"""Work started after Slack's 3-second ack: kept referenced until done, failures logged, and
drained (then cancelled) at shutdown so no execution is dropped without being marked.

Acked triggers run at most `RUNNING_LIMIT` at a time; the others wait in the order they were
acked, each started as one ends. A burst of thousands of commands (or an alert storm next to
them) would otherwise start together and share the default executor's few threads and
SQLite's one writer: every one of them slow, the first as late as the last. Bounded, the
first finish at their usual pace, and `opsbot_triggers_waiting` shows the queue."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from bot.metrics import TRIGGERS_RUNNING, TRIGGERS_WAITING
from bot.pacing import Foreground

__all__ = ["RUNNING_LIMIT", "BackgroundTasks"]

log = logging.getLogger("opsbot.slack")

#: Acked triggers whose work runs at once in a process; more wait for one to end. Most of a
#: trigger's time is spent waiting (on the cluster, a rollout, Slack), so this is well above
#: what the two cores and the executor's threads keep busy, and well below a burst.
RUNNING_LIMIT = 32


class BackgroundTasks:
    def __init__(self, limit: int = RUNNING_LIMIT) -> None:
        if limit < 1:
            raise ValueError("the running limit must be at least 1")
        self.limit = limit
        self._tasks: set[asyncio.Task[Any]] = set()
        # Asked for and not started yet: held by `Foreground` until the requests are answered,
        # or in `_waiting` for a running trigger to end.
        self._deferred = 0
        self._running: set[asyncio.Task[Any]] = set()  # started through `spawn_when_quiet`
        self._waiting: deque[tuple[Callable[..., Coroutine[Any, Any, Any]], tuple[Any, ...],
                                   str, str | None]] = deque()
        self._stopped = False
        #: Delivery ids of the triggers this process holds, waits to start or runs: the
        #: leader's round for triggers acked and never started leaves them alone.
        self.keys: set[str] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)  # the loop holds tasks weakly; this set keeps them alive
        task.add_done_callback(self._done)
        return task

    def spawn_when_quiet(self, foreground: Foreground,
                         work: Callable[..., Coroutine[Any, Any, Any]], *args: Any,
                         name: str, key: str | None = None) -> None:
        """`spawn(work(*args))` once `foreground` is quiet (bot/pacing.py) and fewer than
        `limit` such runs are running. Until then the work is one queued tuple: nothing of it
        is built while the acks it waits for are due. Work still held when `drain` gives up is
        never started. `key`, the trigger's delivery id, is in `keys` until the work ends."""
        self._deferred += 1
        if key is not None:
            self.keys.add(key)
        # The plain function, not a bound method: the held tuple is all a trigger leaves.
        foreground.call_when_quiet(BackgroundTasks._start_held, self, work, args, name, key)

    @property
    def waiting(self) -> int:
        """Triggers released by `Foreground` that wait for a running one to end."""
        return len(self._waiting)

    def _start_held(self, work: Callable[..., Coroutine[Any, Any, Any]],
                    args: tuple[Any, ...], name: str, key: str | None) -> None:
        if self._stopped:
            self._deferred -= 1
            if key is not None:
                self.keys.discard(key)
            return
        self._waiting.append((work, args, name, key))
        self._start_waiting()

    def _start_waiting(self) -> None:
        while self._waiting and len(self._running) < self.limit and not self._stopped:
            work, args, name, key = self._waiting.popleft()
            self._deferred -= 1
            task = self.spawn(work(*args), name)
            self._running.add(task)
            if key is not None:
                task.add_done_callback(functools.partial(self._forget, key))
        TRIGGERS_RUNNING.set(len(self._running))
        TRIGGERS_WAITING.set(len(self._waiting))

    def _forget(self, key: str, _task: asyncio.Task[Any]) -> None:
        self.keys.discard(key)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task in self._running:
            self._running.discard(task)
            self._start_waiting()
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("background task %s failed", task.get_name(), exc_info=exc)

    async def drain(self, timeout: float) -> None:
        """Let running work finish for up to `timeout` seconds, then cancel what is left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        pending: set[asyncio.Task[Any]] = set()
        # Work acked just before shutdown may still be spawned meanwhile (once the last
        # requests are answered): it is waited for too.
        while self._tasks or self._deferred:
            left = deadline - loop.time()
            if left <= 0:
                pending = set(self._tasks)
                break
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=left)
            else:
                await asyncio.sleep(min(left, 0.01))
        self._stopped = True  # what is still held never starts; its record says so
        self._deferred -= len(self._waiting)
        self.keys.difference_update(key for *_, key in self._waiting if key is not None)
        self._waiting.clear()
        TRIGGERS_WAITING.set(0)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("cancelled %d running tasks at shutdown", len(pending))
            await asyncio.wait(pending, timeout=10)
