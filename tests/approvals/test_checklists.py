"""Checklists around a change: approvers confirm the pre-change items (every one, or nothing is
recorded), the audit log says who confirmed what, and a succeeded change lists the post-change
items for its requester. Through the dispatcher, as the console and Slack reach it."""

from __future__ import annotations

from typing import Any

import pytest

from bot.config import ChecklistConfig, Settings
from bot.services import Services
from tests.approvals.conftest import Board
from tests.approvals.test_approvals import replicas, run

BEFORE = ["Release notes read", "Migration is backward compatible"]
AFTER = ["Smoke-test the checkout page"]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    envs = dict(settings.environments)
    envs["prod"] = envs["prod"].model_copy(update={"checklist": ChecklistConfig(
        before=BEFORE, after=AFTER, runbooks=["scale", "deploy"])})
    apps = dict(settings.apps)
    apps["shop-api"] = apps["shop-api"].model_copy(update={"checklist": ChecklistConfig(
        before=["Feature flag `checkout-v2` is off"], runbooks=["scale"])})
    return settings.model_copy(update={"environments": envs, "apps": apps})


ITEMS = [*BEFORE, "Feature flag `checkout-v2` is off"]


async def test_the_request_shows_the_checklist(svc: Services, board: Board) -> None:
    outcome, rep = await run(svc, "scale shop-api 5 --env prod", "alice")
    assert outcome.status == "pending_approval"
    view = board.shown[-1]
    assert view.checklist == tuple(ITEMS)  # the environment's items, then the app's
    assert rep.notices[0].hint is not None
    assert f"approve {outcome.request_id} --confirm 1,2,3" in rep.notices[0].hint
    stored = svc.store.get_request(outcome.request_id)
    assert stored is not None and stored.checklist == tuple(ITEMS)


async def test_approving_needs_every_item(svc: Services, sim: Any) -> None:
    outcome, _ = await run(svc, "scale shop-api 5 --env prod", "alice")
    rid = outcome.request_id
    for text in (f"approve {rid}", f"approve {rid} --confirm 1,3"):
        result, rep = await run(svc, text, "bob")
        assert result.status == "refused", text
        assert "approving needs every item confirmed" in rep.notices[0].text
    assert "Migration is backward compatible" in rep.notices[0].text
    assert "Release notes read" not in rep.notices[0].text  # item 1 was confirmed
    result, rep = await run(svc, f"approve {rid} --confirm 1,4", "bob")
    assert result.status == "refused" and "items 1 to 3" in rep.notices[0].text
    request = svc.store.get_request(rid)
    assert request is not None and request.status == "pending" and request.approvals == []
    assert replicas(sim) == 3

    approved, _ = await run(svc, f"approve {rid} --confirm 3,1,2", "bob")
    assert approved.status == "succeeded"
    sim.wait_idle()
    assert replicas(sim) == 5
    [record] = [r for r in svc.store.export_audit()
                if r["request_id"] == rid and r["outcome"] == "approved"]
    assert record["actor"] == "U0BOB"
    assert record["details"]["confirmed"] == ITEMS


async def test_the_succeeded_change_lists_the_after_items(svc: Services, board: Board) -> None:
    outcome, _ = await run(svc, "scale shop-api 5 --env prod", "alice")
    await run(svc, f"approve {outcome.request_id} --confirm 1,2,3", "bob")
    final = board.execution.final
    assert final.status == "succeeded"
    assert final.checklist == tuple(AFTER) and final.requester == "U0ALICE"


async def test_no_checklist_where_none_is_configured(svc: Services, board: Board) -> None:
    outcome, _ = await run(svc, "restart shop-web --env prod", "alice")
    assert board.shown[-1].checklist == ()  # restart is not in the checklist's runbooks
    result, rep = await run(svc, f"approve {outcome.request_id} --confirm 1", "bob")
    assert result.status == "refused" and "has no checklist" in rep.notices[0].text
    result, _ = await run(svc, f"approve {outcome.request_id}", "bob")
    assert result.status == "succeeded"
    assert board.execution.final.checklist == ()


async def test_a_staging_change_has_no_after_items_of_prod(svc: Services) -> None:
    result, rep = await run(svc, "scale shop-api 4", "alice")
    assert result.status == "succeeded"
    assert rep.final.checklist == ()


@pytest.mark.parametrize("tail", ["--confirm", "--confirm x", "--confirm 1,1", "--confirm 1,01",
                                  "--confirm 0", "--confirm ١", "1,2", "--confirm 1 2"])
async def test_malformed_confirmations_are_usage_errors(svc: Services, tail: str) -> None:
    result, _ = await run(svc, f"approve rq-0123456 {tail}", "bob")
    assert result.status == "usage"
