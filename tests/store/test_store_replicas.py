"""Several replicas on one database: heartbeats, executions' owners, and recovery that
interrupts only the runs of replicas that are gone; alert notifications claimed by one
replica at a time. Stores opened on the same database play the replicas."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from bot.store import Store
from tests.store.conftest import FakeClock

STALE = timedelta(seconds=40)


def run(store: Store, command: str) -> str:
    return store.create_execution(
        runbook="scale", source="slack", actor="U0ALICE", command=command,
        environment="staging", target=command.split()[1], params={}, dry_run=False)


def test_recovery_interrupts_only_the_runs_of_replicas_that_are_gone(
    open_store: Callable[..., Store], clock: FakeClock,
) -> None:
    alive, dead = open_store(clock=clock, replica="pod-a"), open_store(clock=clock,
                                                                      replica="pod-b")
    dead.beat()
    lost = run(dead, "scale shop-web 2")
    dead.acquire_lock("staging/shop-web", execution_id=lost, actor="U0ALICE", ttl_seconds=600)
    clock.advance(timedelta(minutes=2))  # pod-b says nothing more
    alive.beat()
    kept = run(alive, "scale shop-api 4")
    assert alive.get_execution(kept).owner == "pod-a"  # type: ignore[union-attr]

    leader = open_store(clock=clock, replica="pod-c")
    leader.beat()
    interrupted = leader.interrupt_orphaned("opsbot restarted", stale_after=STALE)
    assert [r.id for r in interrupted] == [lost]
    assert leader.get_execution(lost).status == "interrupted"  # type: ignore[union-attr]
    assert leader.get_execution(kept).status == "running"  # type: ignore[union-attr]
    assert leader.get_lock("staging/shop-web") is None  # its lock went with it
    assert leader.interrupt_orphaned("again", stale_after=STALE) == []
    assert leader.live_replicas(STALE) == {"pod-a", "pod-c"}


def test_a_restarted_process_with_the_same_name_recovers_its_earlier_runs(
    open_store: Callable[..., Store], clock: FakeClock,
) -> None:
    before = open_store(clock=clock, replica="pod-a")
    before.beat()
    old = run(before, "scale shop-web 2")
    # The container restarts in the same pod: same name, a fresh heartbeat at once.
    after = open_store(clock=clock, replica="pod-a")
    after.beat()
    new = run(after, "scale shop-api 4")
    assert [r.id for r in after.interrupt_orphaned("restarted", stale_after=STALE)] == [old]
    assert after.get_execution(new).status == "running"  # type: ignore[union-attr]


def test_a_replica_that_stops_forgets_its_heartbeat(
    open_store: Callable[..., Store], clock: FakeClock,
) -> None:
    stopping, leader = open_store(clock=clock, replica="pod-a"), open_store(clock=clock,
                                                                          replica="pod-b")
    stopping.beat()
    left = run(stopping, "scale shop-web 2")
    assert leader.interrupt_orphaned("x", stale_after=STALE) == []  # alive
    stopping.forget_replica()
    assert [r.id for r in leader.interrupt_orphaned("x", stale_after=STALE)] == [left]


def test_a_notification_is_claimed_by_one_replica_until_its_claim_runs_out(
    open_store: Callable[..., Store], clock: FakeClock,
) -> None:
    a, b = open_store(clock=clock, replica="pod-a"), open_store(clock=clock, replica="pod-b")
    nid = a.record_notification(group_key="{}:{alertname=\"X\"}", receiver="opsbot",
                                status="firing", payload={"version": "4"})
    assert [n.id for n in a.claim_notifications(lease=timedelta(minutes=2))] == [nid]
    assert b.claim_notifications(lease=timedelta(minutes=2)) == []
    assert [n.id for n in a.claim_notifications()] == [nid]  # still a's to retry
    clock.advance(timedelta(minutes=3))  # pod-a died holding it
    assert [n.id for n in b.claim_notifications()] == [nid]
    b.mark_notification_processed(nid)
    clock.advance(timedelta(minutes=3))
    assert a.claim_notifications() == [] and b.claim_notifications() == []


def test_alert_runs_of_a_live_replica_are_left_alone(
    open_store: Callable[..., Store], clock: FakeClock,
) -> None:
    alive, dead = open_store(clock=clock, replica="pod-a"), open_store(clock=clock,
                                                                      replica="pod-b")
    dead.beat()
    decision = dict(group_key="{}:{alertname=\"X\"}", alertname="X", runbook="diag",
                    environment="staging", target="shop-api", mutating=False, guardrails=None,
                    problem=None)
    lost = dead.decide_alert_run(state_key="s1", fingerprint="f1", **decision)
    clock.advance(timedelta(minutes=2))
    alive.beat()
    kept = alive.decide_alert_run(state_key="s2", fingerprint="f2", **decision)
    assert (lost.status, kept.status) == ("skipped", "skipped")  # no guardrails: not a run
    # Runs that were allowed (pending) are the ones recovery looks at.
    with alive.sessions() as session, session.begin():
        from bot.store.models import AlertRunRow
        for row in session.query(AlertRunRow):
            row.status, row.finished_at = "pending", None
    interrupted = alive.interrupt_alert_runs(stale_after=STALE)
    assert [r.id for r in interrupted] == [lost.id]
    assert {r.id: r.status for r in alive.alert_runs(kept.group_hash)} == {
        lost.id: "interrupted", kept.id: "pending"}
