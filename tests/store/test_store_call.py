"""`store_call`: a store call's deadline runs from the moment a thread takes it, not while it
waits for one of the default executor's threads (bot/store/calls.py)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from bot.store.calls import store_call


def test_a_call_queued_behind_busy_threads_is_not_timed_out_by_the_wait() -> None:
    """Every thread of a small executor is busy for longer than the deadline; a call queued
    behind them still runs, and answers, because the store bounds its own waits."""
    from concurrent.futures import ThreadPoolExecutor

    release = threading.Event()

    async def scenario() -> str:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=2))
        busy = [loop.run_in_executor(None, release.wait, 10) for _ in range(2)]
        loop.call_later(0.5, release.set)  # the threads are free again after 0.5 s
        answer = await store_call(0.2, lambda: "recorded")
        await asyncio.gather(*busy)
        return answer

    assert asyncio.run(scenario()) == "recorded"


def test_a_call_that_runs_past_its_deadline_times_out() -> None:
    def slow() -> str:
        time.sleep(0.5)
        return "late"

    async def scenario() -> None:
        await store_call(0.1, slow)

    with pytest.raises(TimeoutError, match=r"slow took longer than 0\.1 s"):
        asyncio.run(scenario())


def test_the_callers_context_and_errors_reach_the_call() -> None:
    import contextvars

    who: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="nobody")

    def read(prefix: str) -> str:
        return prefix + who.get()

    def fail() -> None:
        raise LookupError("not there")

    async def scenario() -> str:
        who.set("alice")
        with pytest.raises(LookupError, match="not there"):
            await store_call(1, fail)
        return await store_call(1, read, "by ")

    assert asyncio.run(scenario()) == "by alice"
