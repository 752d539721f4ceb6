"""Requests left `approved` without a recorded run (the process died after the approval, or the
run could not start) are closed and reported, never left hanging and never run again."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from bot.services import Services
from tests.approvals.conftest import Board, Clock
from tests.approvals.test_approvals import replicas, run


async def approved_then_crashed(svc: Services) -> str:
    """alice asks, bob's approval completes it, and the process dies before the run starts:
    the store holds an `approved` request and no execution for it."""
    outcome, _ = await run(svc, "scale shop-api 5 --env prod", "alice")
    result = svc.store.approve(outcome.request_id, "U0BOB")
    assert result.result == "complete"
    return str(outcome.request_id)


def audit_of(svc: Services, rid: str) -> list[tuple[str, str]]:
    return [(r["outcome"], r["details"].get("detail", "")) for r in svc.store.export_audit()
            if r["request_id"] == rid]


def runs_of(svc: Services, rid: str) -> list[Any]:
    return [r for r in svc.store.recent_executions(50) if r.request_id == rid]


async def test_an_approval_whose_run_never_started_is_voided_at_start(
    svc: Services, sim: Any, clock: Clock, board: Board,
) -> None:
    rid = await approved_then_crashed(svc)
    clock.now += timedelta(minutes=11)  # the restart comes after the start grace
    await svc.start()
    await svc.stop()
    request = svc.store.get_request(rid)
    assert request is not None and request.status == "void"
    assert request.note is not None and "never started" in request.note
    assert board.shown[-1].status == "void" and board.shown[-1].request_id == rid
    user, notice = board.told[-1]
    assert user == "U0ALICE" and "never started" in notice.text
    assert "request it again" in notice.text
    assert ("not-started", "opsbot stopped before it started") in audit_of(svc, rid)
    assert runs_of(svc, rid) == [] and replicas(sim) == 3  # reported, not run
    late, rep = await run(svc, f"approve {rid}", "carol")
    assert late.status == "refused" and "void" in rep.notices[0].text


async def test_a_just_approved_request_gets_a_grace_then_a_scheduled_check(
    svc: Services, sim: Any, clock: Clock, board: Board,
) -> None:
    """A process starting next to a busy one must not void what the other is about to run: an
    approval younger than the grace gets a stored check at its end instead."""
    from bot.scheduler import settle_request_job

    rid = await approved_then_crashed(svc)
    clock.now += timedelta(minutes=1)
    await svc.start()
    try:
        assert f"settle-{rid}" in dict(svc.scheduler.jobs())  # type: ignore[union-attr]
        request = svc.store.get_request(rid)
        assert request is not None and request.status == "approved"
        clock.now += timedelta(minutes=10)
        await settle_request_job(rid)
        await settle_request_job(rid)  # a second replica running the same job: no-op
    finally:
        await svc.stop()
    request = svc.store.get_request(rid)
    assert request is not None and request.status == "void"
    assert [o for o, _ in audit_of(svc, rid)].count("not-started") == 1
    assert len([u for u, n in board.told if "never started" in n.text]) == 1
    assert replicas(sim) == 3


async def test_a_run_interrupted_by_a_crash_is_reported_and_not_repeated(
    svc: Services, sim: Any, board: Board,
) -> None:
    rid = await approved_then_crashed(svc)
    # The run had started when the process died: its execution is still `running`.
    execution_id = svc.store.create_execution(
        runbook="scale", source="console", actor="U0ALICE", command="scale shop-api 5 --env prod",
        environment="prod", target="shop-api", params={"app": "shop-api", "replicas": 5},
        dry_run=False, request_id=rid)
    # A console starting next to a server leaves a running run alone.
    await svc.start()
    await svc.stop()
    request = svc.store.get_request(rid)
    assert request is not None and request.status == "approved"
    # `serve` restarting: executions are marked interrupted first, then the request is settled.
    assert await svc.recover() == [execution_id]
    await svc.start()
    await svc.stop()
    request = svc.store.get_request(rid)
    assert request is not None and request.status == "executed"
    assert request.execution_id == execution_id
    assert request.note is not None and "interrupted" in request.note
    assert "not resumed or repeated" in board.told[-1][1].text and board.told[-1][0] == "U0ALICE"
    assert "interrupted" in [o for o, _ in audit_of(svc, rid)]
    assert [r.id for r in runs_of(svc, rid)] == [execution_id]  # never run again
    assert replicas(sim) == 3


async def test_an_approved_run_refused_at_start_closes_the_request(
    svc: Services, sim: Any, board: Board,
) -> None:
    """The target is locked by another run when the approval completes: nothing runs, and the
    request says so instead of staying approved. (A request reserves its target, so this takes
    one without a reservation: made before reservations existed, 0009.)"""
    outcome, _ = await run(svc, "scale shop-api 5 --env prod", "alice")
    rid = outcome.request_id
    with svc.store.engine.begin() as connection:
        connection.execute(text("DELETE FROM target_locks WHERE request_id = :r"), {"r": rid})
    other = svc.store.create_execution(
        runbook="restart", source="console", actor="U0CAROL", command="restart shop-api",
        environment="prod", target="shop-api", params={}, dry_run=False)
    holder = svc.store.acquire_lock("prod/shop-api", execution_id=other, actor="U0CAROL",
                                    ttl_seconds=600)
    assert holder.execution_id == other
    result, _ = await run(svc, f"approve {rid}", "bob")
    assert result.status == "refused"
    request = svc.store.get_request(rid)
    assert request is not None and request.status == "void", request
    assert request.note is not None and "never started" in request.note
    assert board.told[-1][0] == "U0ALICE" and "never started" in board.told[-1][1].text
    assert "not-started" in [o for o, _ in audit_of(svc, rid)]
    assert replicas(sim) == 3


async def test_an_approved_run_that_raises_before_it_is_stored_closes_the_request(
    svc: Services, sim: Any, board: Board, monkeypatch: pytest.MonkeyPatch,
) -> None:
    outcome, _ = await run(svc, "scale shop-api 5 --env prod", "alice")
    rid = outcome.request_id

    async def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("database went away")

    monkeypatch.setattr(svc.dispatcher, "execute", broken)
    with pytest.raises(RuntimeError):
        await run(svc, f"approve {rid}", "bob")
    request = svc.store.get_request(rid)
    assert request is not None and request.status == "void"
    assert request.note is not None and "database went away" in request.note
    assert board.told[-1][0] == "U0ALICE"
    assert ("not-started", "database went away") in audit_of(svc, rid)
    assert replicas(sim) == 3
