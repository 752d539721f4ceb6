"""The approval flow through the dispatcher (console front end): request, decide, run, audit."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from bot.access import CachedGroups
from bot.config import RoleConfig, Settings
from bot.errors import Refused
from bot.registry import HandlerContext, Registry, Result, handler
from bot.services import Services
from bot.store import Store
from bot.trigger import Trigger
from tests.approvals.conftest import Board, Clock
from tests.conftest import RecordingReporter

PROD_API = "/apis/apps/v1/namespaces/shop-prod/deployments/shop-api"


async def run(services: Services, text: str, user: str) -> tuple[Any, RecordingReporter]:
    rep = RecordingReporter()
    trigger = Trigger(source="console", actor=services.settings.user_id(user), text=text)
    return await services.dispatcher.dispatch(trigger, rep), rep


def replicas(sim: Any) -> int:
    return int(sim.get(PROD_API)["spec"]["replicas"])


async def test_prod_change_waits_for_approval(svc: Services, sim: Any, board: Board) -> None:
    before = sim.snapshot()
    outcome, rep = await run(svc, "scale shop-api 5 --env prod --reason 'sale traffic'", "alice")
    assert outcome.status == "pending_approval" and outcome.request_id.startswith("rq-")
    assert "requires approval" in rep.notices[0].text
    view = board.shown[-1]
    assert view.status == "pending" and view.requester == "alice" and view.reason == "sale traffic"
    assert view.plan[0] == "would scale shop-api from 3 to 5 replicas"
    assert "Replicas: 3 → 5" in view.plan
    assert view.approvers == "@sre-approvers" and view.required == 1
    assert sim.snapshot() == before


async def test_bob_approves_and_it_runs(svc: Services, sim: Any, board: Board) -> None:
    outcome, _ = await run(svc, "scale shop-api 5 --env prod", "alice")
    rid = outcome.request_id
    approved, _ = await run(svc, f"approve {rid}", "bob")
    assert approved.status == "succeeded" and approved.request_id == rid
    sim.wait_idle()
    assert replicas(sim) == 5
    assert board.execution.final.status == "succeeded"
    request = svc.store.get_request(rid)
    assert request is not None and request.status == "executed"
    assert request.execution_id == approved.execution_id
    assert [d.user for d in request.approvals] == ["U0BOB"]
    record = svc.store.get_execution(approved.execution_id)
    assert record is not None and record.request_id == rid and record.actor == "U0ALICE"
    audit = [(r["outcome"], r["actor"]) for r in svc.store.export_audit()
             if r["request_id"] == rid]
    assert audit == [("requested", "U0ALICE"), ("approved", "U0BOB"), ("started", "U0ALICE"),
                     ("succeeded", "U0ALICE")]
    again, rep = await run(svc, f"approve {rid}", "carol")
    assert again.status == "refused" and "executed" in rep.notices[0].text


async def test_self_approval_refused(svc: Services, sim: Any) -> None:
    outcome, _ = await run(svc, "scale shop-api 5 --env prod", "bob")
    result, rep = await run(svc, f"approve {outcome.request_id}", "bob")
    assert result.status == "denied"
    assert "cannot approve your own request" in rep.notices[0].text
    assert replicas(sim) == 3


async def test_ineligible_approvers_refused(svc: Services, sim: Any) -> None:
    outcome, _ = await run(svc, "scale shop-api 5 --env prod", "alice")
    for user in ("mallory", "alice"):
        result, rep = await run(svc, f"approve {outcome.request_id}", user)
        assert result.status == "denied", user
    assert "may not approve" in rep.notices[0].text or "own request" in rep.notices[0].text
    request = svc.store.get_request(outcome.request_id)
    assert request is not None and request.status == "pending" and not request.approvals
    assert replicas(sim) == 3


async def test_deny_with_reason(svc: Services, sim: Any, board: Board) -> None:
    outcome, _ = await run(svc, "restart shop-api --env prod", "alice")
    rid = outcome.request_id
    denied, _ = await run(svc, f"deny {rid} not during the sale", "carol")
    assert denied.status == "info"
    request = svc.store.get_request(rid)
    assert request is not None and request.status == "denied"
    assert request.denial is not None and request.denial.reason == "not during the sale"
    assert board.told[-1][0] == "U0ALICE" and "carol denied" in board.told[-1][1].text
    late, rep = await run(svc, f"approve {rid}", "bob")
    assert late.status == "refused" and "denied" in rep.notices[0].text
    audit = [r for r in svc.store.export_audit() if r["request_id"] == rid]
    assert [r["outcome"] for r in audit] == ["requested", "denied"]
    assert audit[1]["actor"] == "U0CAROL"
    assert audit[1]["details"]["reason"] == "not during the sale"


async def test_cancel_only_by_requester(svc: Services) -> None:
    outcome, _ = await run(svc, "restart shop-api --env prod", "alice")
    rid = outcome.request_id
    other, rep = await run(svc, f"cancel {rid}", "bob")
    assert other.status == "denied" and "only alice" in rep.notices[0].text
    mine, _ = await run(svc, f"cancel {rid}", "alice")
    assert mine.status == "info"
    request = svc.store.get_request(rid)
    assert request is not None and request.status == "cancelled"
    audit = [(r["outcome"], r["actor"]) for r in svc.store.export_audit()
             if r["request_id"] == rid]
    assert audit == [("requested", "U0ALICE"), ("cancelled", "U0ALICE")]


async def test_pending_lists_open_requests(svc: Services) -> None:
    first, _ = await run(svc, "restart shop-api --env prod", "alice")
    await run(svc, "scale shop-web 3 --env prod", "alice")
    _, rep = await run(svc, "pending", "mallory")
    lines = rep.notices[0].details
    assert len(lines) == 2 and first.request_id in lines[0]


async def test_plan_drift_voids_the_approval(svc: Services, sim: Any, board: Board) -> None:
    outcome, _ = await run(svc, "scale shop-api 5 --env prod", "alice")
    # Someone else changes the target before the approval completes.
    svc.kube.for_context(None).apps.patch_namespaced_deployment_scale(
        "shop-api", "shop-prod", {"spec": {"replicas": 4}})
    sim.wait_idle()
    result, _ = await run(svc, f"approve {outcome.request_id}", "bob")
    assert result.status == "refused"
    request = svc.store.get_request(outcome.request_id)
    assert request is not None and request.status == "void"
    assert replicas(sim) == 4  # nothing ran
    assert "request it again" in board.told[-1][1].text
    audit = [(r["outcome"], r["actor"]) for r in svc.store.export_audit()
             if r["request_id"] == outcome.request_id]
    assert audit == [("requested", "U0ALICE"), ("approved", "U0BOB"), ("void", "opsbot")]


async def test_expiry(svc: Services, sim: Any, clock: Clock, board: Board) -> None:
    from bot.scheduler import expire_request_job

    outcome, _ = await run(svc, "scale shop-api 5 --env prod", "alice")
    await svc.start()
    try:
        jobs = dict(svc.scheduler.jobs())  # type: ignore[union-attr]
        assert f"expire-{outcome.request_id}" in jobs
        clock.now += timedelta(minutes=31)
        await expire_request_job(outcome.request_id)
    finally:
        await svc.stop()
    request = svc.store.get_request(outcome.request_id)
    assert request is not None and request.status == "expired"
    assert board.shown[-1].status == "expired"
    assert "expired" in board.told[-1][1].text
    late, _ = await run(svc, f"approve {outcome.request_id}", "bob")
    assert late.status == "refused"
    assert replicas(sim) == 3
    audit = [(r["outcome"], r["actor"]) for r in svc.store.export_audit()
             if r["request_id"] == outcome.request_id]
    assert audit == [("requested", "U0ALICE"), ("expired", "opsbot")]


async def test_expiring_twice_is_said_once(settings: Settings, db_url: str, svc: Services,
                                           clock: Clock, board: Board) -> None:
    """Two replicas' schedulers both run the stored expiry job: one expires it, the other
    changes and says nothing."""
    outcome, _ = await run(svc, "scale shop-api 5 --env prod", "alice")
    other = Services.build(settings, registry=Registry.builtin(),
                           store=Store.open(db_url, clock=clock), board=board)
    try:
        clock.now += timedelta(minutes=31)
        await svc.approvals.expire(outcome.request_id)
        await other.approvals.expire(outcome.request_id)
        await other.approvals.expire_due()
    finally:
        other.close()
    assert len([n for _, n in board.told if "expired" in n.text]) == 1
    assert [v.status for v in board.shown].count("expired") == 1
    audit = [r["outcome"] for r in svc.store.export_audit()
             if r["request_id"] == outcome.request_id]
    assert audit.count("expired") == 1


async def test_pending_request_and_timer_survive_restart(settings: Settings, db_url: str,
                                                         clock: Clock, board: Board) -> None:
    first = Services.build(settings, registry=Registry.builtin(),
                           store=Store.open(db_url, clock=clock), board=board)
    await first.start()
    outcome, _ = await run(first, "restart shop-api --env prod", "alice")
    await first.stop()
    first.close()
    second = Services.build(settings, registry=Registry.builtin(),
                            store=Store.open(db_url, clock=clock), board=board)
    try:
        await second.start()
        jobs = dict(second.scheduler.jobs())  # type: ignore[union-attr]
        assert f"expire-{outcome.request_id}" in jobs
        request = second.store.get_request(outcome.request_id)
        assert request is not None and request.status == "pending"
        result, _ = await run(second, f"approve {outcome.request_id}", "bob")
        assert result.status == "succeeded"
    finally:
        await second.stop()
        second.close()


async def test_expired_while_down_is_expired_at_start(settings: Settings, db_url: str,
                                                      clock: Clock, board: Board) -> None:
    services = Services.build(settings, registry=Registry.builtin(),
                              store=Store.open(db_url, clock=clock), board=board)
    try:
        outcome, _ = await run(services, "restart shop-api --env prod", "alice")
        clock.now += timedelta(hours=1)
        await services.start()
        request = services.store.get_request(outcome.request_id)
        assert request is not None and request.status == "expired"
    finally:
        await services.stop()
        services.close()


async def test_dry_run_in_prod_needs_no_approval(svc: Services) -> None:
    outcome, _ = await run(svc, "scale shop-api 5 --env prod --dry-run", "alice")
    assert outcome.status == "succeeded"


async def test_malformed_request_id(svc: Services) -> None:
    outcome, rep = await run(svc, "approve ../../etc", "bob")
    assert outcome.status == "usage" and "request id" in rep.notices[0].text
    outcome, rep = await run(svc, "approve rq-NOSUCHREQUEST0000", "bob")
    assert outcome.status == "usage" and "unknown approval request" in rep.notices[0].text


async def test_group_membership_is_asked_again_once_the_cache_time_is_over(
    settings: Settings, db_url: str, clock: Clock, board: Board, sim: Any,
) -> None:
    """Removing someone from the approvers' user group takes effect within the cache time."""
    seconds = [1000.0]
    in_slack = {"S0APPROVERS": frozenset({"U0BOB", "U0CAROL"})}
    asked: list[str] = []

    async def usergroups_users_list(group_id: str) -> frozenset[str]:
        asked.append(group_id)
        return in_slack.get(group_id, frozenset())

    members = CachedGroups(usergroups_users_list, ttl_seconds=300, clock=lambda: seconds[0])
    services = Services.build(settings, registry=Registry.builtin(), members=members,
                              store=Store.open(db_url, clock=clock), board=board)
    try:
        outcome, _ = await run(services, "scale shop-api 5 --env prod", "alice")
        assert await services.access.in_group("U0BOB", "sre-approvers")
        in_slack["S0APPROVERS"] = frozenset({"U0CAROL"})  # bob leaves the group in Slack
        seconds[0] += 299
        assert await services.access.in_group("U0BOB", "sre-approvers")  # still cached
        calls = len(asked)
        seconds[0] += 1
        result, rep = await run(services, f"approve {outcome.request_id}", "bob")
        assert result.status == "denied" and "bob may not approve" in rep.notices[0].text
        assert len(asked) > calls  # asked Slack again
        request = services.store.get_request(outcome.request_id)
        assert request is not None and request.status == "pending" and not request.approvals
        assert replicas(sim) == 3
    finally:
        services.close()


@handler("test.refuse_for_real")
async def refuse_for_real(*, ctx: HandlerContext, **_: object) -> Result:
    """Plans fine in a dry run, finds nothing to do when it runs (the target moved on)."""
    if ctx.dry_run:
        return Result(summary="would do it")
    raise Refused("nothing to do any more")


async def test_an_approved_run_that_is_refused_voids_its_request(
        settings: Settings, db_url: str, tmp_path: Path, clock: Clock, board: Board) -> None:
    """A refusal changes nothing: the request is void (nothing ran), not executed."""
    (tmp_path / "later.yaml").write_text(
        "name: later\ndescription: Refuses only for real.\nmutating: true\n"
        "command: {verb: later}\nsteps: [{name: Look, handler: test.refuse_for_real}]\n")
    roles = dict(settings.roles)
    roles["tester"] = RoleConfig(users=["U0ALICE"], runbooks=["later"])
    custom = settings.model_copy(update={"runbook_dirs": [str(tmp_path)], "roles": roles})
    services = Services.build(custom, registry=Registry.builtin().load([__name__]),
                              store=Store.open(db_url, clock=clock), board=board)
    try:
        outcome, _ = await run(services, "later --env prod", "alice")
        assert outcome.status == "pending_approval"
        approved, _ = await run(services, f"approve {outcome.request_id}", "bob")
        assert approved.status == "refused"
        assert board.execution.final.status == "refused"
        request = services.store.get_request(outcome.request_id)
        assert request is not None and request.status == "void"
        assert request.execution_id == approved.execution_id
        assert "nothing ran" in board.told[-1][1].text
        assert "nothing to do any more" in board.told[-1][1].text
        audit = [r["outcome"] for r in services.store.export_audit()
                 if r["request_id"] == outcome.request_id]
        assert audit == ["requested", "approved", "started", "refused", "not-started"]
    finally:
        services.close()
