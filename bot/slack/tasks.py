"""Work started after Slack's 3-second ack: kept referenced until done, failures logged, and
drained (then cancelled) at shutdown so no execution is dropped without being marked."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

__all__ = ["BackgroundTasks"]

log = logging.getLogger("opsbot.slack")


class BackgroundTasks:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)  # the loop holds tasks weakly; this set keeps them alive
        task.add_done_callback(self._done)
        return task

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
        # Work acked just before shutdown may still be spawned meanwhile: it is waited for too.
        while self._tasks:
            left = deadline - loop.time()
            if left <= 0:
                pending = set(self._tasks)
                break
            await asyncio.wait(set(self._tasks), timeout=left)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("cancelled %d running tasks at shutdown", len(pending))
            await asyncio.wait(pending, timeout=10)
