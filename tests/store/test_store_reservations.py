"""Reservations (a pending request holds its target), the cancel flag of executions, and the
silences opsbot made: in SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from bot.store import ApprovalRequest, NotFound, Store, TargetHeld

from .conftest import FakeClock

TARGET = "prod/shop-api"
TTL = 1800.0


def _request(store: Store, requester: str = "U0ALICE", **overrides: Any) -> ApprovalRequest:
    fields: dict[str, Any] = {
        "runbook": "scale", "command": "scale shop-api 5 --env prod", "environment": "prod",
        "target": "shop-api", "params": {"app": "shop-api", "replicas": 5}, "reason": None,
        "requester": requester, "source": "slack", "channel": "C0OPS", "plan_text": "plan",
        "plan_digest": "a" * 64, "required": 1, "eligible_users": ["U0CAROL"],
        "eligible_groups": [], "allow_self": False, "ttl_seconds": TTL, "reserve": TARGET,
    }
    fields.update(overrides)
    return store.create_request(**fields)


def _execution(store: Store, **overrides: Any) -> str:
    fields: dict[str, Any] = {
        "runbook": "scale", "source": "console", "actor": "U0BOB",
        "command": "scale shop-api 4 --env prod", "environment": "prod", "target": "shop-api",
        "params": {}, "dry_run": False,
    }
    fields.update(overrides)
    return store.create_execution(**fields)


def test_a_request_reserves_its_target_until_it_expires(clocked_store: Store,
                                                         clock: FakeClock) -> None:
    store = clocked_store
    request = _request(store)
    held = store.get_lock(TARGET)
    assert held is not None and held.reservation
    assert (held.execution_id, held.request_id, held.actor) == (None, request.id, "U0ALICE")
    assert held.expires_at == request.expires_at
    # Any other execution is refused: the holder is the reservation.
    other = store.acquire_lock(TARGET, execution_id="ex-OTHER", actor="U0BOB", ttl_seconds=60)
    assert other.request_id == request.id and other.execution_id is None
    listed = store.held_locks()
    assert [(lock.target, lock.request_id, lock.command) for lock in listed] == [
        (TARGET, request.id, "scale shop-api 5 --env prod")]
    # Past the request's expiry the reservation is over, even before the sweep runs.
    clock.now = request.expires_at
    assert store.get_lock(TARGET) is None
    assert store.acquire_lock(TARGET, execution_id="ex-OTHER", actor="U0BOB",
                              ttl_seconds=60).execution_id == "ex-OTHER"


def test_a_second_request_on_a_reserved_target_is_not_recorded(clocked_store: Store) -> None:
    store = clocked_store
    first = _request(store)
    with pytest.raises(TargetHeld) as caught:
        _request(store, requester="U0BOB", command="deploy shop-api 1.5.0 --env prod")
    assert caught.value.holder.request_id == first.id
    assert [r.id for r in store.pending_requests()] == [first.id]
    # A request on another target, or one that reserves nothing, is made as before.
    assert _request(store, reserve="prod/shop-web").pending
    assert _request(store, reserve=None).pending


def test_a_running_execution_keeps_requests_off_its_target(clocked_store: Store) -> None:
    store = clocked_store
    ex_id = _execution(store)
    store.acquire_lock(TARGET, execution_id=ex_id, actor="U0BOB", ttl_seconds=60)
    with pytest.raises(TargetHeld) as caught:
        _request(store)
    assert caught.value.holder.execution_id == ex_id
    assert store.pending_requests() == []


@pytest.mark.parametrize("ending", ["deny", "cancel", "expire", "expire_due"])
def test_deciding_a_request_otherwise_frees_the_target(clocked_store: Store, clock: FakeClock,
                                                       ending: str) -> None:
    store = clocked_store
    request = _request(store)
    if ending == "deny":
        assert store.deny(request.id, "U0CAROL", "not now").result == "denied"
    elif ending == "cancel":
        assert store.cancel(request.id, "U0ALICE").result == "cancelled"
    else:
        clock.now = request.expires_at + timedelta(seconds=1)
        expired = store.expire(request.id) if ending == "expire" else store.expire_due()
        assert expired
    assert store.held_locks() == []
    # And the next request may reserve it.
    assert _request(store, requester="U0BOB").pending


def test_the_approved_run_takes_its_reservation_over(clocked_store: Store,
                                                     clock: FakeClock) -> None:
    store = clocked_store
    request = _request(store, ttl_seconds=60.0)
    clock.advance(timedelta(seconds=59))
    assert store.approve(request.id, "U0CAROL").result == "complete"
    # Approved a second before it would have expired: the reservation outlives that.
    clock.advance(timedelta(seconds=30))
    held = store.get_lock(TARGET)
    assert held is not None and held.request_id == request.id
    stranger = store.acquire_lock(TARGET, execution_id="ex-OTHER", actor="U0BOB",
                                  ttl_seconds=60)
    assert stranger.execution_id is None  # still the reservation's
    ex_id = _execution(store, actor="U0ALICE", request_id=request.id)
    lease = store.acquire_lock(TARGET, execution_id=ex_id, actor="U0ALICE", ttl_seconds=60,
                               request_id=request.id)
    assert (lease.execution_id, lease.request_id) == (ex_id, request.id)
    # The run's lease is a lease like any: unlock may remove it, release frees it.
    assert store.mark_executed(request.id, ex_id) is not None
    assert store.get_lock(TARGET) == lease  # executing the request does not drop the lease
    assert store.release_lock(TARGET, execution_id=ex_id)
    assert store.held_locks() == []


def test_a_void_request_frees_its_reservation(clocked_store: Store) -> None:
    store = clocked_store
    request = _request(store)
    store.approve(request.id, "U0CAROL")
    assert store.void(request.id, "the plan changed") is not None
    assert store.get_lock(TARGET) is None


def test_unlock_leaves_a_reservation_alone(clocked_store: Store) -> None:
    store = clocked_store
    request = _request(store)
    assert store.force_unlock(TARGET) is None
    held = store.get_lock(TARGET)
    assert held is not None and held.request_id == request.id


def test_cancel_flag_of_a_running_execution(clocked_store: Store, clock: FakeClock) -> None:
    store = clocked_store
    ex_id = _execution(store)
    assert store.cancel_requested(ex_id) is None
    record, asked = store.request_cancel(ex_id, "U0CAROL")
    assert asked and record.cancel_requested_by == "U0CAROL"
    assert record.cancel_requested_at == clock.now
    assert store.cancel_requested(ex_id) == "U0CAROL"
    # Asked once: a second ask changes nothing and says so.
    again, asked = store.request_cancel(ex_id, "U0BOB")
    assert not asked and again.cancel_requested_by == "U0CAROL"
    store.finish_execution(ex_id, status="cancelled", summary="cancelled by carol")
    done = store.get_execution(ex_id)
    assert done is not None and done.status == "cancelled"
    finished, asked = store.request_cancel(ex_id, "U0BOB")
    assert not asked and finished.status == "cancelled"
    with pytest.raises(NotFound):
        store.request_cancel("ex-NOPE", "U0BOB")


def test_running_executions_are_listed_apart(clocked_store: Store) -> None:
    store = clocked_store
    done = _execution(store)
    store.finish_execution(done, status="succeeded", summary="ok")
    running = _execution(store, target="shop-web")
    assert [e.id for e in store.recent_executions(running=True)] == [running]
    assert [e.id for e in store.recent_executions()] == [running, done]
    assert [e.id for e in store.recent_executions(target="shop-api")] == [done]


def test_silences_opsbot_made(clocked_store: Store, clock: FakeClock) -> None:
    store = clocked_store
    sid = "0b9ea2a5-5a7c-4ad2-8b7e-0f2c0a0f5d10"
    ends = clock.now + timedelta(hours=1)
    store.silence_made(sid, matchers={"alertname": "X", "namespace": "shop-prod"},
                       created_by="U0ALICE", ends_at=ends, execution_id="ex-1")
    [made] = store.recent_silences()
    assert (made.id, made.created_by, made.ends_at, made.expired_by) == (
        sid, "U0ALICE", ends, None)
    assert made.matchers == {"alertname": "X", "namespace": "shop-prod"}
    expired = store.silence_expired(sid, "U0BOB")
    assert expired is not None and expired.expired_by == "U0BOB"
    assert expired.expired_at == expired.ends_at == clock.now
    assert store.silence_expired("not-ours", "U0BOB") is None
    # Kept a day after it ended, for the alert message's "expired by" line.
    assert [s.id for s in store.recent_silences()] == [sid]
    clock.advance(timedelta(hours=25))
    assert store.recent_silences() == []
