"""A store call from the event loop, on a thread, bounded by the store's deadline from the
moment a thread runs it.

`asyncio.wait_for(asyncio.to_thread(...), deadline)` counts the wait for one of the default
executor's few threads against the deadline. Under a burst of work (thousands of commands
started together), the calls queue there for longer than any store wait, and fail with a
TimeoutError the store never caused: a command that ran could not record its own answer.
Here, the wait in the queue is not counted; each store wait is bounded by the store itself
(bot/store/db.py), so the queue always moves.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["store_call"]

T = TypeVar("T")


async def store_call(deadline: float, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` on the default executor; TimeoutError once it has run for
    `deadline` seconds without returning (the thread goes on, as `asyncio.to_thread`'s does).
    The time it waited for a free thread is not counted."""
    loop = asyncio.get_running_loop()
    began: list[float] = []

    def run() -> T:
        began.append(time.monotonic())
        return fn(*args, **kwargs)

    context = contextvars.copy_context()
    future = loop.run_in_executor(None, functools.partial(context.run, run))
    wait = deadline
    while True:
        done, _ = await asyncio.wait({future}, timeout=wait)
        if done:
            return future.result()
        if began:
            wait = began[0] + deadline - time.monotonic()
            if wait <= 0:
                raise TimeoutError(f"{getattr(fn, '__name__', 'a store call')} took longer "
                                   f"than {deadline:g} s")
        # else: still waiting for a thread; every call ahead of it is bounded, so it comes.
