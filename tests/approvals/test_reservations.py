"""A prod request awaiting approval reserves its target (Atlantis-style): other mutating
commands on it are refused, naming the request; the request's own run uses it; `locks`,
`unlock` and `executions` show and respect it. Through the dispatcher (console front end)."""

from __future__ import annotations

from typing import Any

from bot.services import Services
from tests.approvals.conftest import Board, Clock
from tests.approvals.test_approvals import replicas, run


async def _request(svc: Services, text: str = "scale shop-api 5 --env prod",
                   user: str = "alice") -> str:
    outcome, _ = await run(svc, text, user)
    assert outcome.status == "pending_approval"
    return str(outcome.request_id)


async def test_a_pending_request_reserves_its_target(svc: Services, sim: Any) -> None:
    rid = await _request(svc)
    listed, rep = await run(svc, "locks", "mallory")
    assert listed.status == "succeeded"
    [step] = rep.final.steps
    assert step.summary == "1 target is locked."
    [(target, line)] = step.fields
    assert target == "shop-api in prod"
    assert f"reserved for alice's request `{rid}`" in line
    assert "`scale shop-api 5 --env prod`" in line and "awaiting approval" in line

    # Another person's change, another runbook: refused, naming who and why; nothing recorded.
    other, rep = await run(svc, "restart shop-api --env prod", "carol")
    assert other.status == "refused"
    text = rep.notices[0].text
    assert "reserved" in text and rid in text and "alice" in text
    assert "scale shop-api 5 --env prod" in text
    assert f"cancel {rid}" in (rep.notices[0].hint or "")
    assert [r.id for r in svc.store.pending_requests()] == [rid]
    # The requester's own second change too: one request per target at a time.
    again, _ = await run(svc, "scale shop-api 4 --env prod", "alice")
    assert again.status == "refused"
    # Break-glass is a mutating run like any: it must wait too (or the request is denied).
    glass, rep = await run(svc, "restart shop-api --env prod --emergency 'site down'", "carol")
    assert glass.status == "refused" and rid in rep.notices[0].text
    # Refusals are audited.
    refused = [r for r in svc.store.export_audit() if r["outcome"] == "refused"]
    assert {r["actor"] for r in refused} >= {"U0CAROL", "U0ALICE"}
    # Other targets, dry runs and staging are not held.
    dry, _ = await run(svc, "restart shop-api --env prod --dry-run", "carol")
    assert dry.status == "succeeded"
    web = await _request(svc, "restart shop-web --env prod", "carol")
    assert web != rid
    assert replicas(sim) == 3


async def test_the_request_runs_under_its_reservation(svc: Services, sim: Any,
                                                      board: Board) -> None:
    rid = await _request(svc)
    approved, _ = await run(svc, f"approve {rid}", "bob")
    assert approved.status == "succeeded" and approved.request_id == rid
    sim.wait_idle()
    assert replicas(sim) == 5
    assert svc.store.held_locks() == []
    # The target is free again for the next change.
    assert await _request(svc, "scale shop-api 3 --env prod", "carol")


async def test_deny_cancel_and_expiry_end_the_reservation(svc: Services, sim: Any,
                                                          clock: Clock) -> None:
    rid = await _request(svc)
    denied, _ = await run(svc, f"deny {rid} not today", "bob")
    assert denied.status == "info" and svc.store.held_locks() == []

    rid = await _request(svc)
    cancelled, _ = await run(svc, f"cancel {rid}", "alice")
    assert cancelled.status == "info" and svc.store.held_locks() == []

    rid = await _request(svc)
    policy = svc.settings.environment("prod").approval
    from datetime import timedelta
    clock.now += timedelta(minutes=policy.ttl_minutes, seconds=1)
    # Past its expiry the target is free even before the sweep marks the request expired.
    assert svc.store.held_locks() == []
    await svc.approvals.expire_due()
    request = svc.store.get_request(rid)
    assert request is not None and request.status == "expired"
    assert await _request(svc, user="carol")


async def test_unlock_refuses_a_reservation_and_points_at_the_request(svc: Services,
                                                                     sim: Any) -> None:
    rid = await _request(svc)
    refused, rep = await run(svc, "unlock shop-api --env prod", "carol")
    assert refused.status == "refused"
    view = rep.final
    assert view.status == "refused"
    assert rid in view.summary and f"cancel {rid}" in view.summary
    assert f"deny {rid}" in view.summary
    held = svc.store.get_lock("prod/shop-api")
    assert held is not None and held.request_id == rid


async def test_executions_lists_runs_newest_first(svc: Services, sim: Any) -> None:
    scaled, _ = await run(svc, "scale shop-web 3", "alice")
    assert scaled.status == "succeeded"
    status, _ = await run(svc, "status shop-api", "alice")
    listed, rep = await run(svc, "executions", "mallory")
    assert listed.status == "succeeded"
    fields = rep.final.steps[0].fields
    # Newest first; not the listing itself.
    assert [name for name, _ in fields] == [status.execution_id, scaled.execution_id]
    line = dict(fields)[scaled.execution_id]
    assert "`scale shop-web 3` by alice" in line and "in `staging`" in line
    assert "done" in line and "took" in line
    # --app filters by target, --running by state.
    _, rep = await run(svc, "executions --app shop-web", "mallory")
    assert [name for name, _ in rep.final.steps[0].fields] == [scaled.execution_id]
    _, rep = await run(svc, "executions --running", "mallory")
    assert rep.final.steps[0].fields == () and rep.final.steps[0].summary == \
        "no running executions"
