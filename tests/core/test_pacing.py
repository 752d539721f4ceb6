"""Answers first (bot/pacing.py): background work waits while requests wait for their answer,
starts in the order it was asked for once they are answered, and is never starved by a
steady stream of them."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

from bot.pacing import Foreground, collect_while_quiet, due_generation
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


def test_a_timer_poll_waits_for_requests_unless_asked_for_meanwhile() -> None:
    # The outbox's sender and the alert processor poll on a timer; their store calls wait
    # for the acks in flight, but an enqueue (the event) does not wait.
    async def scenario() -> tuple[bool, bool, bool, bool]:
        foreground = Foreground(quiet_s=0.01, max_defer_s=60)
        event = asyncio.Event()
        foreground.begin()  # an ack in flight
        poll = asyncio.ensure_future(foreground.wait_quiet_or(event))
        await asyncio.sleep(0.1)
        held = not poll.done()
        event.set()  # something was enqueued: the poll goes now
        await asyncio.sleep(0.01)
        asked = poll.done()
        event.clear()
        poll = asyncio.ensure_future(foreground.wait_quiet_or(event))
        await asyncio.sleep(0.05)
        still_held = not poll.done()
        foreground.end()  # answered: quiet 10 ms later
        await asyncio.sleep(0.1)
        return held, asked, still_held, poll.done()

    assert asyncio.run(scenario()) == (True, True, True, True)


def test_a_pollers_sleep_ends_at_its_event_or_past_its_timeout_once_quiet() -> None:
    async def scenario() -> tuple[bool, bool, bool]:
        foreground = Foreground(quiet_s=0.01, max_defer_s=60)
        event = asyncio.Event()
        foreground.begin()  # an ack in flight
        sleep = asyncio.ensure_future(foreground.wait_woken(event, 0.02))
        await asyncio.sleep(0.1)
        held = not sleep.done()  # past its timeout, but a request waits
        foreground.end()
        await asyncio.sleep(0.1)
        polled = sleep.done()
        sleep = asyncio.ensure_future(foreground.wait_woken(event, 60))
        await asyncio.sleep(0)
        event.set()
        await asyncio.sleep(0.01)
        return held, polled, sleep.done()

    assert asyncio.run(scenario()) == (True, True, True)


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


def test_acked_work_runs_at_most_the_limit_at_once_and_the_rest_in_the_order_acked() -> None:
    """A burst of triggers released together: `limit` run, the rest wait (and are counted
    on /metrics), each started as one ends, in the order they were acked."""
    from prometheus_client import REGISTRY

    def gauge(name: str) -> float | None:
        return REGISTRY.get_sample_value(name)

    async def scenario() -> tuple[list[int], int, list[float | None]]:
        foreground = Foreground(quiet_s=0.01, max_defer_s=60)
        tasks = BackgroundTasks(limit=3)
        started: list[int] = []
        running = [0]
        most = [0]
        gates = [asyncio.Event() for _ in range(10)]

        async def work(i: int) -> None:
            started.append(i)
            running[0] += 1
            most[0] = max(most[0], running[0])
            await gates[i].wait()
            running[0] -= 1

        foreground.begin()
        for i in range(10):
            tasks.spawn_when_quiet(foreground, work, i, name=f"t{i}")
        foreground.end()
        await asyncio.sleep(0.1)
        seen = [gauge("opsbot_triggers_running"), gauge("opsbot_triggers_waiting")]
        assert started == [0, 1, 2] and tasks.waiting == 7
        for i in (1, 0, 2, 3, 4, 5, 6, 7, 8, 9):  # one ends: the next acked starts
            gates[i].set()
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        await tasks.drain(10)
        seen.append(gauge("opsbot_triggers_waiting"))
        return started, most[0], seen

    started, most, seen = asyncio.run(scenario())
    assert started == list(range(10))
    assert most == 3
    assert seen == [3.0, 7.0, 0.0]


def test_work_waiting_for_a_running_slot_when_the_drain_gives_up_never_starts() -> None:
    async def scenario() -> tuple[list[int], int]:
        foreground = Foreground(quiet_s=0.01, max_defer_s=60)
        tasks = BackgroundTasks(limit=1)
        started: list[int] = []

        async def work(i: int) -> None:
            started.append(i)
            await asyncio.sleep(60)

        for i in range(3):
            tasks.spawn_when_quiet(foreground, work, i, name=f"t{i}")
        await tasks.drain(0.2)  # the first is cancelled; the two waiting never start
        await asyncio.sleep(0.05)
        return started, tasks.waiting

    assert asyncio.run(scenario()) == ([0], 0)


def test_a_trigger_is_known_as_held_from_its_ack_until_its_work_ends() -> None:
    """`keys`: what the leader's round for unstarted triggers must leave alone: held for
    quiet, waiting for a running slot, or running."""
    async def scenario() -> list[set[str]]:
        foreground = Foreground(quiet_s=0.01, max_defer_s=60)
        tasks = BackgroundTasks(limit=1)
        gate = asyncio.Event()
        seen = []

        async def work() -> None:
            await gate.wait()

        foreground.begin()
        tasks.spawn_when_quiet(foreground, work, name="a", key="slack:a")
        tasks.spawn_when_quiet(foreground, work, name="b", key="slack:b")
        seen.append(set(tasks.keys))  # both held for quiet
        foreground.end()
        await asyncio.sleep(0.1)
        seen.append(set(tasks.keys))  # one runs, one waits for it
        gate.set()
        await tasks.drain(10)
        seen.append(set(tasks.keys))
        return seen

    assert asyncio.run(scenario()) == [{"slack:a", "slack:b"}, {"slack:a", "slack:b"}, set()]


def test_the_collection_due_is_the_oldest_generation_past_its_threshold() -> None:
    thresholds = (10_000, 10, 10)
    assert due_generation((12_000, 3, 4), thresholds) == 0
    assert due_generation((12_000, 11, 4), thresholds) == 1
    assert due_generation((12_000, 11, 11), thresholds) == 2
    assert due_generation((12_000, 10, 10), thresholds) == 0  # Python's rule: past, not at


def test_the_collector_runs_while_quiet_and_never_while_a_request_waits() -> None:
    """With `serve`'s high first threshold, the young objects work leaves are collected while
    no request waits; a request in flight holds the collection back."""
    collected: list[int] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "stop":
            collected.append(info["generation"])

    async def scenario() -> tuple[list[int], list[int], int]:
        foreground = Foreground(quiet_s=0.01)
        collector = asyncio.ensure_future(collect_while_quiet(foreground, every_s=0.01,
                                                              least=500))
        foreground.begin()  # a request waits for its answer
        garbage = [[] for _ in range(2_000)]
        for item in garbage:
            item.append(item)  # cycles: only the collector frees them
        del garbage
        await asyncio.sleep(0.2)
        while_waiting = list(collected)
        foreground.end()
        await asyncio.sleep(0.2)
        collector.cancel()
        return while_waiting, list(collected), gc.get_count()[0]

    threshold = gc.get_threshold()
    gc.set_threshold(1_000_000, *threshold[1:])  # nothing collects on its own meanwhile
    gc.collect()  # every generation's count from 0: the one due is the young one
    gc.callbacks.append(seen)
    try:
        while_waiting, after, young = asyncio.run(scenario())
    finally:
        gc.callbacks.remove(seen)
        gc.set_threshold(*threshold)
    assert while_waiting == []
    assert after and after[0] == 0
    assert young < 500
