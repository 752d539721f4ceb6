"""Break-glass: --emergency runs a guarded change at once for allowed roles, loudly, flagged in
the audit log, with reminders until an approver acknowledges it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bot.config import Settings
from bot.registry import Registry
from bot.services import Services
from bot.store import Store
from tests.approvals.test_approvals import Board, Clock, replicas, run


class LoudBoard(Board):
    def __init__(self) -> None:
        super().__init__()
        self.announced: list[str] = []

    async def announce(self, view: Any, text: str) -> None:
        self.announced.append(text)


@pytest.fixture
def loud() -> LoudBoard:
    return LoudBoard()


@pytest.fixture
def svc(settings: Settings, db_url: str, loud: LoudBoard) -> Iterator[Services]:
    services = Services.build(settings, registry=Registry.builtin(),
                              store=Store.open(db_url, clock=Clock()), board=loud)
    yield services
    services.close()


async def test_break_glass_runs_at_once_and_is_announced(svc: Services, sim: Any,
                                                         loud: LoudBoard) -> None:
    outcome, _ = await run(svc, 'scale shop-api 6 --env prod --emergency "checkout down"', "bob")
    assert outcome.status == "succeeded"
    sim.wait_idle()
    assert replicas(sim) == 6
    assert "Break-glass" in loud.announced[0] and "checkout down" in loud.announced[0]
    rid = outcome.request_id
    request = svc.store.get_request(rid)
    assert request is not None and request.emergency and request.status == "pending"
    audit = [(r["outcome"], r["actor"]) for r in svc.store.export_audit()
             if r["request_id"] == rid]
    assert audit[0] == ("break-glass", "U0BOB")
    assert ("succeeded", "U0BOB") in audit
    record = svc.store.get_execution(outcome.execution_id)
    assert record is not None and record.request_id == rid


async def test_reminders_until_acknowledged(svc: Services, loud: LoudBoard) -> None:
    outcome, _ = await run(svc, 'restart shop-web --env prod --emergency "stuck pods"', "bob")
    rid = outcome.request_id
    assert await svc.approvals.remind(rid) is True
    assert "still not acknowledged" in loud.announced[-1]
    mine, rep = await run(svc, f"approve {rid}", "bob")
    assert mine.status == "denied"  # the one who broke the glass cannot acknowledge it
    ack, rep = await run(svc, f"approve {rid}", "carol")
    assert ack.status == "info" and "acknowledged" in rep.notices[0].text
    assert await svc.approvals.remind(rid) is False
    executions = [r for r in svc.store.recent_executions(10) if r.request_id == rid]
    assert len(executions) == 1  # acknowledging never runs it again
    audit = [r["outcome"] for r in svc.store.export_audit() if r["request_id"] == rid]
    assert audit[-1] == "acknowledged"


async def test_break_glass_needs_the_role(svc: Services, sim: Any, loud: LoudBoard) -> None:
    outcome, rep = await run(svc, 'scale shop-api 6 --env prod --emergency "hurry"', "alice")
    assert outcome.status == "denied" and "may not use --emergency" in rep.notices[0].text
    assert replicas(sim) == 3 and not loud.announced


async def test_emergency_where_no_approval_is_needed(svc: Services) -> None:
    outcome, rep = await run(svc, 'scale shop-api 4 --emergency "x"', "bob")
    assert outcome.status == "usage"
    assert "only for changes that need approval" in rep.notices[0].text
