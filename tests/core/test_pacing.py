"""Answers first (bot/pacing.py): background work waits while requests wait for their answer,
starts in the order it was asked for once they are answered, and is never starved by a
steady stream of them."""

from __future__ import annotations

import asyncio
import gc
import time
import warnings

from bot.pacing import Foreground, after_quiet


def test_work_waits_for_requests_in_flight_then_starts_in_order() -> None:
    async def scenario() -> list[str]:
        foreground = Foreground(quiet_s=0.01, max_defer_s=60)
        started: list[str] = []

        async def work(name: str) -> None:
            started.append(name)

        foreground.begin()  # a request waits for its ack
        tasks = [asyncio.create_task(after_quiet(foreground, work(n))) for n in "abc"]
        await asyncio.sleep(0.1)
        assert started == []  # nothing starts while the ack is pending
        foreground.end()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        return started

    assert asyncio.run(scenario()) == ["a", "b", "c"]


def test_work_alone_starts_without_waiting_for_anything() -> None:
    async def scenario() -> bool:
        foreground = Foreground(quiet_s=0.01, max_defer_s=60)
        await asyncio.sleep(0.02)
        waiter = asyncio.ensure_future(foreground.wait_quiet())
        await asyncio.sleep(0)
        return waiter.done()

    assert asyncio.run(scenario())


def test_a_steady_stream_of_requests_delays_work_but_never_starves_it() -> None:
    async def scenario() -> tuple[bool, int]:
        foreground = Foreground(quiet_s=0.05, max_defer_s=0.2)
        done = asyncio.Event()

        async def work() -> None:
            done.set()

        foreground.begin()  # never ends: requests keep arriving
        task = asyncio.create_task(after_quiet(foreground, work()))
        await asyncio.wait_for(done.wait(), 10)
        await task
        return done.is_set(), foreground.in_flight

    started, in_flight = asyncio.run(scenario())
    assert started and in_flight == 1


def test_work_cancelled_while_waiting_is_closed_not_left_unawaited() -> None:
    async def scenario() -> None:
        foreground = Foreground(quiet_s=0.01, max_defer_s=60)
        foreground.begin()

        async def work() -> None:
            raise AssertionError("never started")

        task = asyncio.create_task(after_quiet(foreground, work()))
        await asyncio.sleep(0.02)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled()

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine ... was never awaited" would be an error
        asyncio.run(scenario())
        gc.collect()


def test_work_asked_for_long_ago_does_not_wait_again() -> None:
    """The deadline counts from when the work was asked for (a notification's arrival), so a
    backlog processed under a steady intake keeps its pace instead of waiting per item."""
    async def scenario() -> tuple[bool, bool]:
        foreground = Foreground(quiet_s=0.01, max_defer_s=60)
        foreground.begin()  # requests keep arriving
        old = asyncio.ensure_future(foreground.wait_quiet(asked_at=time.monotonic() - 61))
        new = asyncio.ensure_future(foreground.wait_quiet())
        await asyncio.sleep(0.05)
        result = old.done(), new.done()
        new.cancel()
        return result

    assert asyncio.run(scenario()) == (True, False)


def test_a_request_is_alone_while_no_other_is_in_flight() -> None:
    foreground = Foreground()
    foreground.begin()
    assert foreground.alone()
    foreground.begin()  # a second one arrives before the first is answered
    assert not foreground.alone()
    foreground.end()
    assert foreground.alone()
