"""Slack triggers queued in their delivery claim before the ack: claimed once, started once
across replicas, and found by the leader when acked and never started."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from bot.store import Store
from tests.store.conftest import FakeClock

ORPHANED = timedelta(seconds=30)


def test_a_trigger_is_queued_once_and_started_once(
    open_store: Callable[..., Store], clock: FakeClock,
) -> None:
    a, b = open_store(clock=clock, replica="pod-a"), open_store(clock=clock, replica="pod-b")
    assert a.accept_trigger("slack:T1", '{"text": "scale shop-web 3"}')
    assert not b.accept_trigger("slack:T1", '{"text": "scale shop-web 3"}')  # Slack's retry
    assert not b.claim_delivery("slack:T1")
    assert b.start_trigger("slack:T1")
    assert not a.start_trigger("slack:T1")  # the replica that acked it comes second
    assert not a.start_trigger("slack:T2")  # nothing queued under that key
    assert a.claim_delivery("slack:T3") and not a.start_trigger("slack:T3")  # a plain claim


def test_the_leader_finds_triggers_acked_and_never_started(
    open_store: Callable[..., Store], clock: FakeClock,
) -> None:
    dead, live = open_store(clock=clock, replica="pod-a"), open_store(clock=clock,
                                                                     replica="pod-b")
    assert dead.accept_trigger("slack:lost", '{"text": "restart shop-api"}')
    assert dead.accept_trigger("slack:done", '{"text": "status shop-api"}')
    assert dead.start_trigger("slack:done")
    assert live.claim_delivery("slack:plain")
    assert live.unstarted_triggers(ORPHANED) == []  # just acked: its replica starts it
    clock.advance(timedelta(minutes=1))
    assert live.accept_trigger("slack:fresh", '{"text": "scale shop-web 2"}')
    [lost] = live.unstarted_triggers(ORPHANED)
    assert (lost.key, lost.trigger, lost.owner) == ("slack:lost", '{"text": "restart shop-api"}',
                                                    "pod-a")
    clock.advance(timedelta(seconds=1))
    assert [q.key for q in live.unstarted_triggers(timedelta(0))] == ["slack:lost",
                                                                      "slack:fresh"]
    assert live.start_trigger("slack:lost")
    assert [q.key for q in live.unstarted_triggers(timedelta(0))] == ["slack:fresh"]
