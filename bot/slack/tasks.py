"""Work started after Slack's 3-second ack: kept referenced until done, failures logged, and
drained (then cancelled) at shutdown so no execution is dropped without being marked."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from bot.pacing import Foreground

__all__ = ["BackgroundTasks"]

log = logging.getLogger("opsbot.slack")


class BackgroundTasks:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._deferred = 0  # asked for, held by `Foreground` until the requests are answered
        self._stopped = False

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)  # the loop holds tasks weakly; this set keeps them alive
        task.add_done_callback(self._done)
        return task

    def spawn_when_quiet(self, foreground: Foreground,
                         work: Callable[..., Coroutine[Any, Any, Any]], *args: Any,
                         name: str) -> None:
        """`spawn(work(*args))` once `foreground` is quiet (bot/pacing.py). Until then the
        work is one queued tuple: nothing of it is built while the acks it waits for are
        due. Work still held when `drain` gives up is never started."""
        self._deferred += 1
        # The plain function, not a bound method: the held tuple is all a trigger leaves.
        foreground.call_when_quiet(BackgroundTasks._start_held, self, work, args, name)

    def _start_held(self, work: Callable[..., Coroutine[Any, Any, Any]],
                    args: tuple[Any, ...], name: str) -> None:
        self._deferred -= 1
        if not self._stopped:
            self.spawn(work(*args), name)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
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
        for task in pending:
            task.cancel()
        if pending:
            log.warning("cancelled %d running tasks at shutdown", len(pending))
            await asyncio.wait(pending, timeout=10)
