"""Approval requests: lifecycle, expiry by the store's clock, and approvers racing."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, timedelta
from typing import Any

import pytest

from bot.store import ApprovalOutcome, ApprovalRequest, Decision, NotFound, Store
from bot.store.approvals import RunOfRequest

from .conftest import FakeClock

TTL = 1800.0


def _request(store: Store, **overrides: Any) -> ApprovalRequest:
    fields: dict[str, Any] = {
        "runbook": "scale",
        "command": "scale shop-api 5 --env prod",
        "environment": "prod",
        "target": "shop-api",
        "params": {"app": "shop-api", "replicas": 5},
        "reason": "Black Friday traffic",
        "requester": "U0ALICE",
        "source": "slack",
        "channel": "C0OPS",
        "plan_text": "Deployment shop-api: replicas 3 -> 5",
        "plan_digest": "a" * 64,
        "required": 1,
        "eligible_users": ["U0CAROL"],
        "eligible_groups": ["sre-approvers"],
        "allow_self": False,
        "ttl_seconds": TTL,
    }
    fields.update(overrides)
    return store.create_request(**fields)


def test_create_and_get(clocked_store: Store, clock: FakeClock) -> None:
    store = clocked_store
    request = _request(store, emergency=True)
    assert re.fullmatch(r"rq-[0-9A-HJKMNP-TV-Z]{26}", request.id)
    assert request.created_at == clock.now and request.created_at.tzinfo is UTC
    assert request.expires_at == request.created_at + timedelta(seconds=TTL)
    assert (request.status, request.decided_at, request.approvals, request.denial) == (
        "pending",
        None,
        [],
        None,
    )
    assert (request.channel, request.ts, request.execution_id, request.note) == (
        "C0OPS",
        None,
        None,
        None,
    )
    assert request.pending and request.emergency and not request.allow_self
    assert request.params == {"app": "shop-api", "replicas": 5}
    assert (request.eligible_users, request.eligible_groups) == (["U0CAROL"], ["sre-approvers"])
    assert store.get_request(request.id) == request
    assert store.get_request("rq-NOPE") is None
    assert store.get_request(request.id[:-1]) is None  # exact ids only, no prefixes
    assert _request(store).emergency is False


def test_set_request_message(store: Store) -> None:
    request = _request(store, channel=None)
    store.set_request_message(request.id, channel="C0APPROVALS", ts="1733.0001")
    stored = store.get_request(request.id)
    assert stored is not None and (stored.channel, stored.ts) == ("C0APPROVALS", "1733.0001")
    with pytest.raises(NotFound):
        store.set_request_message("rq-NOPE", channel="C", ts="1")


def test_pending_requests_oldest_first(clocked_store: Store, clock: FakeClock) -> None:
    store = clocked_store
    first = _request(store)
    staging = _request(store, environment="staging")
    short = _request(store, ttl_seconds=60)
    decided = _request(store)
    assert store.approve(decided.id, "U0BOB").result == "complete"
    assert [r.id for r in store.pending_requests()] == [first.id, staging.id, short.id]
    assert [r.id for r in store.pending_requests(environment="prod")] == [first.id, short.id]
    assert store.pending_requests(environment="dev") == []
    # Past its expiry but not swept yet: still listed, until expire_due runs.
    clock.advance(timedelta(seconds=61))
    assert short.id in [r.id for r in store.pending_requests()]
    assert [r.id for r in store.expire_due()] == [short.id]
    assert [r.id for r in store.pending_requests()] == [first.id, staging.id]


def test_approvals_recorded_then_complete(clocked_store: Store, clock: FakeClock) -> None:
    store = clocked_store
    request = _request(store, required=2)
    first = store.approve(request.id, "U0BOB")
    assert first.result == "recorded"
    assert first.request.status == "pending" and first.request.decided_at is None
    assert first.request.approvals == [Decision("U0BOB", clock.now)]
    assert store.get_request(request.id) == first.request

    second = store.approve(request.id, "U0CAROL")
    assert second.result == "complete"
    assert second.request.status == "approved" and second.request.decided_at == clock.now
    assert [d.user for d in second.request.approvals] == ["U0BOB", "U0CAROL"]
    assert second.request.approvals[1].at == clock.now
    assert store.get_request(request.id) == second.request
    assert store.pending_requests() == []

    late = store.approve(request.id, "U0DAVE")
    assert late == ApprovalOutcome(second.request, "not_pending")


def test_a_repeated_approval_counts_once(store: Store) -> None:
    request = _request(store, required=2)
    assert store.approve(request.id, "U0BOB").result == "recorded"
    again = store.approve(request.id, "U0BOB")
    assert again.result == "already_approved"
    assert [d.user for d in again.request.approvals] == ["U0BOB"]
    assert again.request.status == "pending"
    assert store.approve(request.id, "U0CAROL").result == "complete"
    assert store.approve(request.id, "U0BOB").result == "not_pending"


def test_deny(clocked_store: Store, clock: FakeClock) -> None:
    store = clocked_store
    request = _request(store, required=2)
    store.approve(request.id, "U0BOB")
    denied = store.deny(request.id, "U0CAROL", "not during the freeze")
    assert denied.result == "denied"
    assert denied.request.status == "denied" and denied.request.decided_at == clock.now
    assert denied.request.denial == Decision("U0CAROL", clock.now, "not during the freeze")
    assert [d.user for d in denied.request.approvals] == ["U0BOB"]
    assert store.get_request(request.id) == denied.request
    assert store.deny(request.id, "U0DAVE", "me too") == ApprovalOutcome(
        denied.request, "not_pending"
    )


def test_approve_after_deny_cancel_or_expiry_is_refused(
    clocked_store: Store, clock: FakeClock
) -> None:
    store = clocked_store
    denied = _request(store)
    store.deny(denied.id, "U0BOB", "no")
    cancelled = _request(store)
    outcome = store.cancel(cancelled.id, "U0ALICE", "wrong replica count")
    assert outcome.result == "cancelled"
    assert (outcome.request.status, outcome.request.note) == ("cancelled", "wrong replica count")
    assert (outcome.request.cancelled_by, outcome.request.decided_at) == ("U0ALICE", clock.now)
    expired = _request(store, ttl_seconds=60)
    clock.advance(timedelta(seconds=60))

    for request_id, status in ((denied.id, "denied"), (cancelled.id, "cancelled")):
        refused = store.approve(request_id, "U0CAROL")
        assert (refused.result, refused.request.status) == ("not_pending", status)
        assert refused.request.approvals == []
        assert store.deny(request_id, "U0CAROL", "x").result == "not_pending"
        assert store.cancel(request_id, "U0ALICE").result == "not_pending"

    late = store.approve(expired.id, "U0CAROL")
    assert (late.result, late.request.status, late.request.approvals) == ("expired", "pending", [])
    assert store.deny(expired.id, "U0CAROL", "x").result == "expired"
    assert store.get_request(expired.id) == late.request  # nothing recorded, nothing changed
    assert store.expire(expired.id) is not None
    assert store.approve(expired.id, "U0CAROL").result == "not_pending"
    assert store.cancel(expired.id, "U0ALICE").result == "not_pending"

    for call in (
        lambda: store.approve("rq-NOPE", "U0BOB"),
        lambda: store.deny("rq-NOPE", "U0BOB", "x"),
        lambda: store.cancel("rq-NOPE", "U0BOB"),
        lambda: store.expire("rq-NOPE"),
    ):
        with pytest.raises(NotFound):
            call()


def test_expiry_follows_the_clock(clocked_store: Store, clock: FakeClock) -> None:
    store = clocked_store
    request = _request(store, required=2, ttl_seconds=60)
    assert store.expire(request.id) is None  # not due yet
    clock.now = request.expires_at - timedelta(milliseconds=2)  # the call reads 1 ms before
    assert store.approve(request.id, "U0BOB").result == "recorded"
    clock.now = request.expires_at - timedelta(milliseconds=1)  # read exactly at expires_at
    assert store.approve(request.id, "U0CAROL").result == "expired"

    expired = store.expire(request.id)
    assert expired is not None
    assert (expired.status, expired.decided_at) == ("expired", clock.now)
    assert [d.user for d in expired.approvals] == ["U0BOB"]
    assert store.expire(request.id) is None  # reported once
    assert store.get_request(request.id) == expired


def test_cancel_past_expiry_still_cancels(clocked_store: Store, clock: FakeClock) -> None:
    store = clocked_store
    request = _request(store, ttl_seconds=60)
    clock.advance(timedelta(seconds=61))
    outcome = store.cancel(request.id, "U0ALICE")
    assert (outcome.result, outcome.request.note) == ("cancelled", None)
    assert store.expire(request.id) is None and store.expire_due() == []


def test_expire_due(clocked_store: Store, clock: FakeClock) -> None:
    store = clocked_store
    short = _request(store, ttl_seconds=60)
    shorter = _request(store, ttl_seconds=30)
    long = _request(store, ttl_seconds=3600)
    approved = _request(store, ttl_seconds=10)
    store.approve(approved.id, "U0BOB")
    assert store.expire_due() == []

    clock.advance(timedelta(seconds=120))
    due = store.expire_due()
    assert [r.id for r in due] == [short.id, shorter.id]  # oldest first
    assert all(r.status == "expired" and r.decided_at == clock.now for r in due)
    assert store.expire_due() == []
    assert [r.id for r in store.pending_requests()] == [long.id]
    assert store.get_request(approved.id).status == "approved"  # type: ignore[union-attr]


def test_void_and_mark_executed(store: Store) -> None:
    request = _request(store)
    assert store.void(request.id, "plan changed") is None  # pending: nothing to void
    assert store.mark_executed(request.id, "ex-1") is None
    store.approve(request.id, "U0BOB")

    voided = store.void(request.id, "replicas are 4 now, not 3")
    assert voided is not None
    assert (voided.status, voided.note) == ("void", "replicas are 4 now, not 3")
    assert voided.decided_at is not None and [d.user for d in voided.approvals] == ["U0BOB"]
    assert store.mark_executed(request.id, "ex-1") is None
    assert store.void(request.id, "again") is None
    assert store.get_request(request.id) == voided

    other = _request(store)
    store.approve(other.id, "U0BOB")
    executed = store.mark_executed(other.id, "ex-01JD3ZK4Q8V6N1T0R9M2C5B7XW")
    assert executed is not None
    assert (executed.status, executed.execution_id) == ("executed", "ex-01JD3ZK4Q8V6N1T0R9M2C5B7XW")
    assert store.mark_executed(other.id, "ex-2") is None
    assert store.void(other.id, "late") is None
    assert store.get_request(other.id) == executed
    assert store.approve(other.id, "U0CAROL").result == "not_pending"

    with pytest.raises(NotFound):
        store.void("rq-NOPE", "x")
    with pytest.raises(NotFound):
        store.mark_executed("rq-NOPE", "ex-1")


def test_arguments_are_checked(store: Store) -> None:
    for required in (0, -1):
        with pytest.raises(ValueError, match="required"):
            _request(store, required=required)
    for ttl in (0.0, -5.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="ttl_seconds"):
            _request(store, ttl_seconds=ttl)
    assert store.pending_requests() == []
    request = _request(store)
    with pytest.raises(ValueError, match="user"):
        store.approve(request.id, "")


# races --------------------------------------------------------------------------------


def _at_once(calls: list[Callable[[], ApprovalOutcome]]) -> list[ApprovalOutcome]:
    """Run ``calls`` in threads released together by a barrier; results in call order."""
    barrier = threading.Barrier(len(calls), timeout=60)

    def run(call: Callable[[], ApprovalOutcome]) -> ApprovalOutcome:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def _approver(store: Store, request_id: str, user: str) -> Callable[[], ApprovalOutcome]:
    return lambda: store.approve(request_id, user)


def _denier(store: Store, request_id: str, user: str) -> Callable[[], ApprovalOutcome]:
    return lambda: store.deny(request_id, user, "not now")


@pytest.fixture
def replicas(open_store: Callable[..., Store]) -> list[Store]:
    return [open_store(), open_store()]


def test_race_for_a_one_approval_request(replicas: list[Store]) -> None:
    for _ in range(3):
        request = _request(replicas[0])
        outcomes = _at_once(
            [_approver(replicas[n % 2], request.id, f"U0APPROVER{n}") for n in range(8)]
        )
        assert Counter(o.result for o in outcomes) == {"complete": 1, "not_pending": 7}
        (winner,) = [o for o in outcomes if o.result == "complete"]
        assert winner.request.status == "approved" and len(winner.request.approvals) == 1
        assert replicas[1].get_request(request.id) == winner.request


def test_race_for_a_two_approval_request(replicas: list[Store]) -> None:
    for _ in range(3):
        request = _request(replicas[0], required=2)
        outcomes = _at_once(
            [_approver(replicas[n % 2], request.id, f"U0APPROVER{n}") for n in range(3)]
        )
        assert sorted(o.result for o in outcomes) == ["complete", "not_pending", "recorded"]
        users = {o.result: f"U0APPROVER{n}" for n, o in enumerate(outcomes)}
        winner = next(o for o in outcomes if o.result == "complete")
        # Exactly two approvals when it completed, in the order recorded.
        assert [d.user for d in winner.request.approvals] == [users["recorded"], users["complete"]]
        assert replicas[1].get_request(request.id) == winner.request


def test_one_user_approving_from_many_threads_counts_once(replicas: list[Store]) -> None:
    request = _request(replicas[0], required=2)
    outcomes = _at_once([_approver(replicas[n % 2], request.id, "U0BOB") for n in range(8)])
    assert Counter(o.result for o in outcomes) == {"recorded": 1, "already_approved": 7}
    stored = replicas[0].get_request(request.id)
    assert stored is not None and stored.status == "pending"
    assert [d.user for d in stored.approvals] == ["U0BOB"]


def test_deny_races_approve(replicas: list[Store]) -> None:
    for _ in range(6):
        request = _request(replicas[0])
        calls: list[Callable[[], ApprovalOutcome]] = []
        for n in range(3):
            calls.append(_approver(replicas[n % 2], request.id, f"U0APPROVER{n}"))
            calls.append(_denier(replicas[(n + 1) % 2], request.id, f"U0DENIER{n}"))
        outcomes = _at_once(calls)
        results = Counter(o.result for o in outcomes)
        won = [o for o in outcomes if o.result in ("complete", "denied")]
        assert len(won) == 1 and results["not_pending"] == 5, results
        final = replicas[1].get_request(request.id)
        assert final is not None and final == won[0].request
        if won[0].result == "complete":
            assert final.status == "approved" and final.denial is None
        else:
            assert final.status == "denied" and final.approvals == []


def test_concurrent_sweeps_report_each_expiry_once(
    open_store: Callable[..., Store], clock: FakeClock
) -> None:
    stores = [open_store(clock=clock), open_store(clock=clock)]
    ids = {_request(stores[0], ttl_seconds=60).id for _ in range(10)}
    clock.advance(timedelta(seconds=61))
    barrier = threading.Barrier(4, timeout=60)

    def sweep(n: int) -> list[str]:
        barrier.wait()
        if n % 2:
            return [r.id for r in stores[n % 2].expire_due()]
        return [r.id for i in sorted(ids) if (r := stores[n % 2].expire(i)) is not None]

    with ThreadPoolExecutor(4) as pool:
        swept = [i for batch in pool.map(sweep, range(4)) for i in batch]
    assert sorted(swept) == sorted(ids)


_WORKER = """
import sys, time
from bot.store import Store
url, request_id, start, name = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
store = Store.open(url, migrate=False)
time.sleep(max(0.0, start - time.time()))
print(store.approve(request_id, name).result, flush=True)
store.close()
"""


def test_race_between_processes(open_store: Callable[..., Store], db_url: str) -> None:
    request = _request(open_store(), required=2)
    start = time.time() + 3.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, db_url, request.id, str(start), f"U0PROC{i}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    results = [proc.communicate(timeout=60)[0].strip() for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * len(procs)
    assert sorted(results) == ["complete", "not_pending", "not_pending", "recorded"]
    stored = open_store().get_request(request.id)
    assert stored is not None and stored.status == "approved" and len(stored.approvals) == 2


def test_a_lost_flip_records_nothing(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the conditional UPDATE ever changed nothing, the approval is rolled back with it."""
    from bot.store import approvals

    request = _request(store)
    monkeypatch.setattr(approvals, "_transition", lambda *args, **kwargs: False)
    outcome = store.approve(request.id, "U0BOB")
    assert (outcome.result, outcome.request.status, outcome.request.approvals) == (
        "not_pending",
        "pending",
        [],
    )
    monkeypatch.undo()
    assert store.approve(request.id, "U0BOB").result == "complete"


# Settling requests left approved, reminders claimed once, the scheduler's table ------------


def test_unfinished_requests_and_their_runs(clocked_store: Store, clock: FakeClock) -> None:
    store = clocked_store
    grace = timedelta(minutes=10)
    request = _request(store)
    assert store.approve(request.id, "U0CAROL").result == "complete"
    emergency = _request(store, emergency=True)
    assert store.approve(emergency.id, "U0CAROL").result == "complete"  # acknowledged: final
    [found] = store.unfinished_requests(grace)
    assert found.request.id == request.id and found.run is None and not found.overdue
    clock.advance(grace)
    [found] = store.unfinished_requests(grace, request.id)
    assert found.overdue and found.start_by == found.request.decided_at + grace  # type: ignore[operator]
    assert store.unfinished_requests(grace, emergency.id) == []

    execution_id = store.create_execution(
        runbook="scale", source="slack", actor="U0ALICE", command=request.command,
        environment="prod", target="shop-api", params={}, dry_run=False, request_id=request.id)
    [found] = store.unfinished_requests(grace)
    assert found.run == RunOfRequest(execution_id, "running", None)

    settled = store.mark_executed(request.id, execution_id, "interrupted")
    assert settled is not None and settled.status == "executed"
    assert (settled.execution_id, settled.note) == (execution_id, "interrupted")
    assert store.mark_executed(request.id, execution_id) is None  # once only
    assert store.void(request.id, "late") is None
    assert store.unfinished_requests(grace) == []


def test_settle_void_only_from_approved(store: Store) -> None:
    pending = _request(store)
    assert store.void(pending.id, "x") is None
    assert store.approve(pending.id, "U0CAROL").result == "complete"
    voided = store.void(pending.id, "never started")
    assert voided is not None and (voided.status, voided.note) == ("void", "never started")
    assert store.void(pending.id, "again") is None


def test_a_reminder_is_claimed_once_per_interval_across_replicas(
    open_store: Callable[..., Store], clock: FakeClock,
) -> None:
    first, second = open_store(clock=clock), open_store(clock=clock)
    request = _request(first, emergency=True, ttl_seconds=3600.0)
    every = 900.0
    clock.advance(timedelta(seconds=every + 1))
    verdicts = [s.claim_reminder(request.id, every)[0] for s in (first, second)]
    assert sorted(verdicts) == ["duplicate", "remind"]
    clock.advance(timedelta(seconds=every))
    assert second.claim_reminder(request.id, every)[0] == "remind"
    clock.advance(timedelta(hours=1))
    assert first.claim_reminder(request.id, every)[0] == "expired"
    ordinary = _request(first)
    assert first.claim_reminder(ordinary.id, every)[0] == "stop"


def test_autogenerate_leaves_the_scheduler_jobs_table_alone(store: Store) -> None:
    """APScheduler's table lives in opsbot's database; `alembic revision --autogenerate` must
    neither drop it nor try to create it."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler
    from sqlalchemy import inspect

    from bot.scheduler import JOBS_TABLE
    from bot.store import migrate as store_migrate
    from bot.store.models import Base

    scheduler = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=store.engine, tablename=JOBS_TABLE)})
    scheduler.start(paused=True)  # creates the table, as `opsbot serve` does
    scheduler.shutdown(wait=False)
    assert JOBS_TABLE in inspect(store.engine).get_table_names()
    with store.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_object": store_migrate.include_object})
        assert compare_metadata(context, Base.metadata) == []
