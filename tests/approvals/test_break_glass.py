"""Break-glass: --emergency runs a guarded change at once for allowed roles, loudly, flagged in
the audit log, with reminders until an approver acknowledges it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from bot import messages
from bot.config import Settings
from bot.registry import Registry
from bot.scheduler import Scheduler
from bot.services import Services
from bot.store import Store
from tests.approvals.conftest import Board, Clock
from tests.approvals.test_approvals import replicas, run


class LoudBoard(Board):
    def __init__(self) -> None:
        super().__init__()
        self.announced: list[str] = []

    async def announce(self, view: Any, text: str) -> None:
        self.announced.append(text)


@pytest.fixture
def board() -> LoudBoard:
    return LoudBoard()


@pytest.fixture
def loud(board: LoudBoard) -> LoudBoard:
    return board


async def eventually(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        await asyncio.sleep(0.05)


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


def card(view: Any) -> str:
    """The request's message as the boards show it: headline, then its lines."""
    return "\n".join([messages.approval_headline(view.status, view.command, view.environment,
                                                  view.emergency),
                      *messages.approval_lines(view)])


async def test_the_card_never_calls_a_break_glass_change_approved(svc: Services,
                                                                  loud: LoudBoard) -> None:
    outcome, _ = await run(svc, 'restart shop-web --env prod --emergency "stuck pods"', "bob")
    before = card(loud.shown[-1])
    assert "ran under break-glass, awaiting acknowledgement" in before
    assert "stuck pods (awaiting acknowledgement); it ran without prior approval" in before
    await run(svc, f"approve {outcome.request_id}", "carol")
    after = card(loud.shown[-1])
    # It said "(approved); it ran without approval": acknowledged after the fact, not approved.
    assert "ran under break-glass, acknowledged" in after
    assert "stuck pods (acknowledged); it ran without prior approval" in after
    assert "approved" not in after


async def test_break_glass_needs_the_role(svc: Services, sim: Any, loud: LoudBoard) -> None:
    outcome, rep = await run(svc, 'scale shop-api 6 --env prod --emergency "hurry"', "alice")
    assert outcome.status == "denied" and "may not use --emergency" in rep.notices[0].text
    assert replicas(sim) == 3 and not loud.announced


async def test_emergency_where_no_approval_is_needed(svc: Services) -> None:
    outcome, rep = await run(svc, 'scale shop-api 4 --emergency "x"', "bob")
    assert outcome.status == "usage"
    assert "only for changes that need approval" in rep.notices[0].text


async def test_reminder_job_runs_and_stops_after_a_week(svc: Services, loud: LoudBoard,
                                                        clock: Clock) -> None:
    """With APScheduler running (reminders every second here): the job is stored, reminds,
    and stops by itself once the week is over; the request then expires, said once."""
    scheduler = Scheduler(svc.store, svc.approvals, remind_minutes=1 / 60)
    await scheduler.start()
    try:
        outcome, _ = await run(svc, 'restart shop-web --env prod --emergency "stuck pods"',
                               "bob")
        rid = outcome.request_id
        jobs = dict(scheduler.jobs())
        assert f"remind-{rid}" in jobs and f"expire-{rid}" in jobs
        await eventually(lambda: any("still not acknowledged" in t for t in loud.announced))
        clock.now += timedelta(days=7, seconds=1)  # nobody acknowledged it within the week
        await eventually(lambda: f"remind-{rid}" not in dict(scheduler.jobs()))
        reminders = len(loud.announced)
        await asyncio.sleep(1.5)
        assert len(loud.announced) == reminders  # stopped
    finally:
        await scheduler.stop()
    request = svc.store.get_request(rid)
    assert request is not None and request.status == "expired"
    told = [n.text for u, n in loud.told if u == "U0BOB"]
    assert len([t for t in told if "nobody acknowledged" in t]) == 1
    audit = [r["outcome"] for r in svc.store.export_audit() if r["request_id"] == rid]
    assert audit.count("expired") == 1


async def test_reminders_stop_at_the_week_without_a_restart(svc: Services,
                                                            loud: LoudBoard,
                                                            clock: Clock) -> None:
    outcome, _ = await run(svc, 'restart shop-web --env prod --emergency "stuck pods"', "bob")
    rid = outcome.request_id
    assert await svc.approvals.remind(rid) is True
    clock.now += timedelta(days=7)
    assert await svc.approvals.remind(rid) is False
    request = svc.store.get_request(rid)
    assert request is not None and request.status == "expired"


async def test_two_replicas_reminding_at_once_post_one_reminder(
    svc: Services, settings: Settings, db_url: str, loud: LoudBoard, clock: Clock,
) -> None:
    """Each replica's scheduler may run the same stored reminder job: one reminder per
    interval is posted whoever runs it."""
    outcome, _ = await run(svc, 'restart shop-web --env prod --emergency "stuck pods"', "bob")
    rid = outcome.request_id
    other = Services.build(settings, registry=Registry.builtin(),
                           store=Store.open(db_url, clock=clock), board=loud)
    try:
        every = 15 * 60.0
        clock.now += timedelta(minutes=15, seconds=1)
        before = len(loud.announced)
        assert await svc.approvals.remind(rid, every) is True
        assert await other.approvals.remind(rid, every) is True  # keeps reminding later
        assert len(loud.announced) == before + 1
        clock.now += timedelta(minutes=15)
        assert await other.approvals.remind(rid, every) is True
        assert len(loud.announced) == before + 2
    finally:
        other.close()
