"""`cancel <execution-id>`: the running step finishes, the on_failure steps run, the execution
ends cancelled; asked from another process sharing the database too; who may ask."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import RoleConfig, Settings, load_settings
from bot.registry import HandlerContext, Params, Registry, Result, handler
from bot.services import Services
from bot.trigger import Trigger
from tests.conftest import DEMO_CONFIG, RecordingReporter

# The step a test holds open: it says when it started and finishes when the test lets it.
ENTERED: dict[str, asyncio.Event] = {}
RELEASE: dict[str, asyncio.Event] = {}
CALLS: list[str] = []


class TextParams(Params):
    text: str = ""


@handler("test.cancel.gate", params=TextParams, mutating=True)
async def gate(*, ctx: HandlerContext, params: TextParams, **_: object) -> Result:
    """Waits for the test."""
    ENTERED["gate"].set()
    await RELEASE["gate"].wait()
    CALLS.append("gate")
    return Result(summary="gate passed")


@handler("test.cancel.note", params=TextParams)
async def note(*, ctx: HandlerContext, params: TextParams, **_: object) -> Result:
    """Records that it ran."""
    CALLS.append(params.text)
    return Result(summary=params.text)


RUNBOOK = """
name: slow
description: A change that waits in its first step.
mutating: true
parameters:
  app: {type: app}
command: {verb: slow, args: [app]}
steps:
  - {name: Wait, handler: test.cancel.gate}
  - {name: Second, handler: test.cancel.note, with: {text: second}}
  - {name: Third, handler: test.cancel.note, with: {text: third}}
on_failure:
  - {name: Cleanup, handler: test.cancel.note, with: {text: "cleanup after {{ failure }}"}}
"""


def _settings(tmp_path: Path, db_url: str) -> Settings:
    (tmp_path / "runbooks").mkdir(exist_ok=True)
    (tmp_path / "runbooks" / "slow.yaml").write_text(RUNBOOK)
    base = load_settings(DEMO_CONFIG, environ={"OPSBOT_DATABASE_URL": db_url})
    roles = dict(base.roles)
    roles["slowpoke"] = RoleConfig(users=["U0ALICE"], runbooks=["slow"])
    return base.model_copy(update={"runbook_dirs": [str(tmp_path / "runbooks")],
                                   "roles": roles})


@pytest.fixture
def shared_db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'shared.db'}"


@pytest.fixture
def replicas(tmp_path: Path, shared_db: str) -> Iterator[tuple[Services, Services]]:
    """Two processes' services on one database: one runs, the other hears the cancel."""
    settings = _settings(tmp_path, shared_db)
    first = Services.build(settings, registry=Registry.builtin().load([__name__]))
    second = Services.build(settings, registry=Registry.builtin().load([__name__]))
    ENTERED["gate"], RELEASE["gate"] = asyncio.Event(), asyncio.Event()
    CALLS.clear()
    try:
        yield first, second
    finally:
        first.close()
        second.close()


async def _dispatch(services: Services, text: str, user: str) -> tuple[Any, RecordingReporter]:
    reporter = RecordingReporter()
    trigger = Trigger(source="console", actor=services.settings.user_id(user), text=text)
    return await services.dispatcher.dispatch(trigger, reporter), reporter


async def _started(services: Services, text: str, user: str = "alice"
                   ) -> tuple[asyncio.Task[Any], str]:
    """The run of `text` held in its first step, and its execution id."""
    task = asyncio.create_task(_dispatch(services, text, user))
    await asyncio.wait_for(ENTERED["gate"].wait(), 30)
    [running] = services.store.recent_executions(running=True)
    return task, running.id


async def test_cancel_from_another_replica_stops_between_steps(
        replicas: tuple[Services, Services]) -> None:
    runner, other = replicas
    task, ex_id = await _started(runner, "slow shop-api")
    assert runner.store.get_lock("staging/shop-api") is not None

    asked, reporter = await _dispatch(other, f"cancel {ex_id}", "carol")
    assert asked.status == "info"
    assert "Wait" in reporter.notices[0].text and "on-failure" in reporter.notices[0].text
    RELEASE["gate"].set()
    outcome, run_reporter = await asyncio.wait_for(task, 30)

    assert outcome.status == "cancelled" and outcome.execution_id == ex_id
    view = run_reporter.final
    assert view.status == "cancelled"
    assert [(s.name, s.status) for s in view.steps] == [
        ("Wait", "succeeded"), ("Second", "skipped"), ("Third", "skipped"),
        ("Cleanup", "succeeded")]
    assert CALLS == ["gate", "cleanup after cancelled by carol"]  # the running step finished
    assert "cancelled by carol" in view.summary
    record = runner.store.get_execution(ex_id)
    assert record is not None and record.status == "cancelled"
    assert record.cancel_requested_by == "U0CAROL"
    assert runner.store.get_lock("staging/shop-api") is None
    audit = [(r["actor"], r["outcome"]) for r in runner.store.export_audit()
             if r["execution_id"] == ex_id]
    assert ("U0CAROL", "cancel-requested") in audit and ("U0ALICE", "cancelled") in audit

    # Finished: a second cancel is refused, and says how it ended.
    again, reporter = await _dispatch(other, f"cancel {ex_id}", "carol")
    assert again.status == "refused"
    assert "not running" in reporter.notices[0].text and "cancelled" in reporter.notices[0].text


async def test_who_may_cancel(replicas: tuple[Services, Services]) -> None:
    runner, _ = replicas
    task, ex_id = await _started(runner, "slow shop-api")
    # mallory (a viewer) may not run `slow` and is no approver: denied, audited, still running.
    denied, reporter = await _dispatch(runner, f"cancel {ex_id}", "mallory")
    assert denied.status == "denied" and "may not cancel" in reporter.notices[0].text
    assert runner.store.cancel_requested(ex_id) is None
    assert ("U0MALLORY", "denied") in [(r["actor"], r["outcome"])
                                       for r in runner.store.export_audit()]
    # The person who started it may.
    asked, _ = await _dispatch(runner, f"cancel {ex_id}", "alice")
    assert asked.status == "info"
    twice, reporter = await _dispatch(runner, f"cancel {ex_id}", "alice")
    assert twice.status == "info" and "already being cancelled" in reporter.notices[0].text
    RELEASE["gate"].set()
    outcome, _ = await asyncio.wait_for(task, 30)
    assert outcome.status == "cancelled"


async def test_cancel_of_unknown_or_malformed_ids(replicas: tuple[Services, Services]) -> None:
    runner, _ = replicas
    unknown, reporter = await _dispatch(runner, "cancel ex-01NOSUCHTHING0000000000000", "alice")
    assert unknown.status == "usage" and "unknown execution" in reporter.notices[0].text
    for text in ("cancel ex-", "cancel ../../etc", "cancel"):
        malformed, reporter = await _dispatch(runner, text, "alice")
        assert malformed.status == "usage", text
        assert "request or execution id" in reporter.notices[0].text


async def test_a_run_that_ended_is_not_cancelled(replicas: tuple[Services, Services]) -> None:
    runner, _ = replicas
    task, ex_id = await _started(runner, "slow shop-api")
    RELEASE["gate"].set()
    outcome, _ = await asyncio.wait_for(task, 30)
    assert outcome.status == "succeeded" and CALLS == ["gate", "second", "third"]
    refused, reporter = await _dispatch(runner, f"cancel {ex_id}", "alice")
    assert refused.status == "refused" and "succeeded" in reporter.notices[0].text
    record = runner.store.get_execution(ex_id)
    assert record is not None and record.status == "succeeded"
    assert record.cancel_requested_by is None
