"""Answers first (bot/pacing.py): background work waits while requests wait for their answer,
starts in the order it was asked for once they are answered, and is never starved by a
steady stream of them."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bot.pacing import Foreground
from bot.slack.tasks import BackgroundTasks


def test_work_waits_for_requests_in_flight_then_starts_in_order() -> None:
    async def scenario() -> list[str]:
        foreground = Foreground(quiet_s=0.01, max_defer_s=60)
        started: list[str] = []
        foreground.begin()  # a request waits for its ack
        for name in "abc":
            foreground.call_when_quiet(lambda name=name: started.append(name))
        await asyncio.sleep(0.1)
        assert started == []  # nothing starts while the ack is pending
        foreground.end()
        await asyncio.sleep(0.1)
        return started

    assert asyncio.run(scenario()) == ["a", "b", "c"]


def test_one_failing_start_does_not_hold_back_the_others() -> None:
    async def scenario() -> list[str]:
        foreground = Foreground(quiet_s=0.01, max_defer_s=60)
        started: list[str] = []

        def broken() -> None:
            raise RuntimeError("a bug in one start")

        foreground.begin()
        foreground.call_when_quiet(broken)
        foreground.call_when_quiet(lambda: started.append("next"))
        foreground.end()
        await asyncio.sleep(0.1)
        return started

    assert asyncio.run(scenario()) == ["next"]


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
        foreground.begin()  # never ends: requests keep arriving
        foreground.call_when_quiet(done.set)
        await asyncio.wait_for(done.wait(), 10)
        return done.is_set(), foreground.in_flight

    started, in_flight = asyncio.run(scenario())
    assert started and in_flight == 1


def test_work_held_for_quiet_is_built_then_and_drained_at_shutdown() -> None:
    """Held work is one callback: its coroutine is made once the requests are answered.
    At shutdown the drain waits for it to start and finish."""
    async def scenario() -> list[str]:
        foreground = Foreground(quiet_s=0.01, max_defer_s=60)
        tasks = BackgroundTasks()
        seen: list[str] = []

        def work() -> Any:
            seen.append("built")

            async def run() -> None:
                await asyncio.sleep(0.05)
                seen.append("finished")
            return run()

        foreground.begin()
        tasks.spawn_when_quiet(foreground, work, name="held")
        await asyncio.sleep(0.05)
        assert seen == [] and len(tasks) == 0  # nothing built while the ack is due
        foreground.end()  # the last request answered: shutdown begins
        await tasks.drain(10)
        return seen

    assert asyncio.run(scenario()) == ["built", "finished"]


def test_work_still_held_when_the_drain_gives_up_never_starts() -> None:
    async def scenario() -> tuple[list[str], int]:
        foreground = Foreground(quiet_s=0.01, max_defer_s=60)
        tasks = BackgroundTasks()
        built: list[str] = []

        async def never() -> None:
            raise AssertionError("not to run")

        def work() -> Any:
            built.append("built")
            return never()

        foreground.begin()  # a request that is never answered
        tasks.spawn_when_quiet(foreground, work, name="held")
        await tasks.drain(0.1)
        foreground.end()
        await asyncio.sleep(0.1)
        return built, len(tasks)

    assert asyncio.run(scenario()) == ([], 0)


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
