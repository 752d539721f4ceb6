"""`Deadline`: ends a wait as `asyncio.timeout` does, with one timer per loop."""

from __future__ import annotations

import asyncio

import pytest

from bot import deadlines
from bot.deadlines import TICK_S, Deadline


def test_a_wait_past_its_deadline_ends_in_timeout_error_soon_after() -> None:
    async def scenario() -> tuple[float, bool]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = Deadline(0.1)
        with pytest.raises(TimeoutError), deadline:
            await asyncio.sleep(30)
        return loop.time() - started, deadline.expired

    took, expired = asyncio.run(scenario())
    assert expired
    assert 0.1 <= took < 0.1 + TICK_S + 1.0  # late by a tick at most, plus a busy machine


def test_a_wait_in_time_is_left_alone_and_the_timer_stops() -> None:
    async def scenario() -> tuple[str, bool, int, bool]:
        loop = asyncio.get_running_loop()
        deadline = Deadline(5)
        with deadline:
            await asyncio.sleep(0)
            result = "done"
        watch = deadlines._watch(loop)
        armed = len(watch.armed)
        await asyncio.sleep(TICK_S * 3)  # the timer looks once more, finds nothing, stops
        return result, deadline.expired, armed, not watch.ticking

    assert asyncio.run(scenario()) == ("done", False, 0, True)


def test_many_waits_share_one_timer_and_each_ends_on_its_own_deadline() -> None:
    async def one(seconds: float, sleep: float) -> str:
        try:
            with Deadline(seconds):
                await asyncio.sleep(sleep)
        except TimeoutError:
            return "timeout"
        return "done"

    async def scenario() -> tuple[list[str], int]:
        loop = asyncio.get_running_loop()
        tasks = [asyncio.ensure_future(one(0.1, 30)) for _ in range(50)]
        tasks += [asyncio.ensure_future(one(30, 0.01)) for _ in range(50)]
        await asyncio.sleep(0)
        timers = sum(1 for handle in loop._scheduled  # type: ignore[attr-defined]
                     if not handle.cancelled() and getattr(handle, "_callback", None)
                     == deadlines._watch(loop)._look)
        return list(await asyncio.gather(*tasks)), timers

    results, timers = asyncio.run(scenario())
    assert results == ["timeout"] * 50 + ["done"] * 50
    assert timers == 1


def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    async def waits() -> None:
        with Deadline(30):
            await asyncio.sleep(30)

    async def scenario() -> None:
        task = asyncio.ensure_future(waits())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


@pytest.mark.parametrize(("outer_s", "inner_s", "expected"), [
    (0.05, 30, "outer"), (30, 0.05, "inner")], ids=["outer-first", "inner-first"])
def test_nested_with_asyncio_timeout_the_first_to_run_out_is_the_one_raised(
        outer_s: float, inner_s: float, expected: str) -> None:
    async def scenario() -> str:
        try:
            async with asyncio.timeout(outer_s):
                try:
                    with Deadline(inner_s):
                        await asyncio.sleep(30)
                except TimeoutError:
                    return "inner"
        except TimeoutError:
            return "outer"
        return "none"

    assert asyncio.run(scenario()) == expected


def test_a_finished_loop_is_not_kept_alive() -> None:
    """The watch of a loop is held by the loop (its timer), never the other way round."""
    import gc
    import weakref

    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def scenario() -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        with Deadline(30):
            await asyncio.sleep(0)  # left while the timer is still pending

    asyncio.run(scenario())
    gc.collect()
    assert loops[0]() is None


def test_outside_a_task_is_refused() -> None:
    with pytest.raises(RuntimeError, match=r"loop|task"), Deadline(1):
        pass
