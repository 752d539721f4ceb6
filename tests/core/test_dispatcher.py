"""The dispatcher with test handlers: persistence, audit, dedup, retries, failures, redaction."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import RoleConfig, Settings
from bot.errors import PermanentError, RetryableError
from bot.registry import HandlerContext, Params, Registry, Result, handler
from bot.reporting import ExecutionView
from bot.services import Services
from bot.trigger import Trigger
from tests.conftest import RecordingReporter

CALLS: list[dict[str, Any]] = []


class EchoParams(Params):
    text: str
    count: int = 1


@handler("test.echo", params=EchoParams)
async def echo(*, ctx: HandlerContext, params: EchoParams, **_: object) -> Result:
    """Echo its text."""
    CALLS.append({"text": params.text, "count": params.count, "dry_run": ctx.dry_run})
    return Result(
        summary=f"echo {params.text}",
        fields=(("Count", str(params.count)),),
        data={"text": params.text},
    )


FLAKY = {"left": 0}


@handler("test.flaky")
async def flaky(*, ctx: HandlerContext, **_: object) -> Result:
    """Fails transiently while FLAKY['left'] > 0."""
    if FLAKY["left"] > 0:
        FLAKY["left"] -= 1
        raise RetryableError("busy", delay=0.01)
    return Result(summary="made it")


@handler("test.fail")
async def fail(*, ctx: HandlerContext, **_: object) -> Result:
    """Always fails."""
    raise PermanentError("it broke")


@handler("test.crash")
async def crash(*, ctx: HandlerContext, **_: object) -> Result:
    """A bug in a handler."""
    raise ZeroDivisionError("secret-internal-detail")


@handler("test.refuse")
async def refuse(*, ctx: HandlerContext, **_: object) -> Result:
    """Finds nothing to do."""
    from bot.errors import Refused

    raise Refused("nothing to do here", hint="try another day")


@handler("test.change", params=EchoParams, mutating=True)
async def change(*, ctx: HandlerContext, params: EchoParams, **_: object) -> Result:
    """A change (echoes in a dry run too)."""
    CALLS.append({"text": params.text, "count": params.count, "dry_run": ctx.dry_run})
    return Result(summary=f"changed {params.text}")


@handler("test.unchecked")
async def unchecked(*, ctx: HandlerContext, **_: object) -> Result:
    """Could not make its check."""
    return Result(summary="not checked: no URL", not_checked=("alerts (no URL)",))


@handler("test.hang")
async def hang(*, ctx: HandlerContext, **_: object) -> Result:
    """Never finishes (until cancelled)."""
    await asyncio.sleep(3600)
    return Result(summary="unreachable")


RUNBOOKS = {
    "echo.yaml": """
name: echo
description: Echo things.
parameters:
  text: {type: string}
  token: {type: string, secret: true, default: none}
command: {verb: echo, args: [text]}
steps:
  - {id: first, name: First, handler: test.echo, with: {text: "{{ params.text }}"}}
  - name: Second
    handler: test.echo
    with: {text: "again {{ steps.first.data.text }}", count: 2}
  - {name: Skipped, handler: test.echo, with: {text: x}, when: "dry_run"}
follow_up:
  - {label: Again, command: "echo {{ params.text }}"}
""",
    "flaky.yaml": """
name: flaky
description: Transient failures.
command: {verb: flaky}
steps: [{name: Flaky, handler: test.flaky}]
""",
    "fail.yaml": """
name: fail
description: Fails and cleans up.
mutating: true
command: {verb: fail}
steps:
  - {name: Break, handler: test.fail}
  - {name: Never, handler: test.echo, with: {text: never}}
on_failure: [{name: Cleanup, handler: test.echo, with: {text: cleanup}}]
follow_up:
  - {label: Retry, command: "fail", when: failed}
  - {label: Celebrate, command: "echo yay", when: succeeded}
""",
    "failtwice.yaml": """
name: failtwice
description: Fails, and so does its cleanup.
command: {verb: failtwice}
steps: [{name: Break, handler: test.fail}]
on_failure: [{name: Undo, handler: test.fail}]
""",
    "crash.yaml": """
name: crash
description: A handler bug.
command: {verb: crash}
steps: [{name: Crash, handler: test.crash}]
""",
    "touch.yaml": """
name: touch
description: A change to an app that needs its lock.
mutating: true
parameters:
  app: {type: app}
command: {verb: touch, args: [app]}
steps: [{name: Touch, handler: test.echo, with: {text: "{{ params.app }}"}}]
""",
    "noop.yaml": """
name: noop
description: Refused by its first step; cleanup must not run.
mutating: true
command: {verb: noop}
steps:
  - {name: Look, handler: test.refuse}
  - {name: Change, handler: test.change, with: {text: never}}
on_failure: [{name: Cleanup, handler: test.echo, with: {text: cleanup}}]
follow_up: [{label: Again, command: "noop", when: always}]
""",
    "late.yaml": """
name: late
description: Refused after a change began; a failure, cleaned up.
mutating: true
command: {verb: late}
steps:
  - {name: Change, handler: test.change, with: {text: first}}
  - {name: Look, handler: test.refuse}
on_failure: [{name: Cleanup, handler: test.echo, with: {text: cleanup}}]
""",
    "unchecked.yaml": """
name: unchecked
description: A check that cannot run, and a step that sees it.
command: {verb: unchecked}
steps:
  - {id: look, name: Look, handler: test.unchecked}
  - name: Policy
    handler: test.echo
    when: "not_checked and steps.look.not_checked"
    with: {text: "{{ not_checked | join(', ') }}"}
""",
    "hang.yaml": """
name: hang
description: Never ends.
mutating: true
command: {verb: hang}
steps: [{name: Hang, handler: test.hang}]
""",
}


@pytest.fixture
def test_services(tmp_path: Path, offline_settings: Settings) -> Iterator[Services]:
    for name, text in RUNBOOKS.items():
        (tmp_path / name).write_text(text)
    registry = Registry.builtin().load([__name__])
    roles = dict(offline_settings.roles)
    roles["tester"] = RoleConfig(users=["U0ALICE"], runbooks=["echo", "flaky", "fail", "crash",
                                                              "hang", "failtwice", "touch", "noop",
                                                              "late", "unchecked"])
    settings = offline_settings.model_copy(
        update={"runbook_dirs": [str(tmp_path)], "roles": roles})
    built = Services.build(settings, registry=registry)
    CALLS.clear()
    yield built
    built.close()


async def _dispatch(
    services: Services, text: str, user: str = "U0ALICE", delivery: str | None = None
) -> tuple[Any, RecordingReporter]:
    rep = RecordingReporter()
    trigger = Trigger(source="console", actor=user, text=text, delivery_id=delivery)
    return await services.dispatcher.dispatch(trigger, rep), rep


async def test_steps_run_in_order_with_templated_arguments(test_services: Services) -> None:
    outcome, rep = await _dispatch(test_services, "echo hello")
    assert outcome.status == "succeeded"
    assert [c["text"] for c in CALLS] == ["hello", "again hello"]
    assert [s.status for s in rep.final.steps] == ["succeeded", "succeeded", "skipped"]
    assert rep.final.buttons[0].command == "echo hello"


async def test_execution_and_steps_are_stored(test_services: Services) -> None:
    outcome, _ = await _dispatch(test_services, "echo hi")
    record = test_services.store.get_execution(outcome.execution_id)
    assert record is not None
    assert record.status == "succeeded" and record.runbook == "echo" and record.actor == "U0ALICE"
    assert [s.status for s in record.steps][:2] == ["succeeded", "succeeded"]
    assert record.steps[0].summary == "echo hi"


async def test_every_view_update_is_for_one_execution(test_services: Services) -> None:
    _, rep = await _dispatch(test_services, "echo hi")
    assert len({v.execution_id for v in rep.views}) == 1
    assert rep.views[0].status == "running" and rep.final.status == "succeeded"
    assert len(rep.views) >= 4  # start, each step start and finish, end


async def test_duplicate_delivery_runs_once(test_services: Services) -> None:
    first, _ = await _dispatch(test_services, "echo once", delivery="slack:T1")
    second, rep = await _dispatch(test_services, "echo once", delivery="slack:T1")
    assert first.status == "succeeded" and second.status == "duplicate"
    assert [c["text"] for c in CALLS] == ["once", "again once"]
    assert not rep.views and not rep.notices


async def test_retryable_error_is_retried(test_services: Services) -> None:
    FLAKY["left"] = 2
    outcome, rep = await _dispatch(test_services, "flaky")
    assert outcome.status == "succeeded"
    assert rep.final.steps[0].summary == "made it"


async def test_retries_give_up(test_services: Services) -> None:
    FLAKY["left"] = 10
    outcome, rep = await _dispatch(test_services, "flaky")
    assert outcome.status == "failed"
    assert rep.final.steps[0].summary == "busy"


async def test_failure_stops_steps_and_runs_on_failure(test_services: Services) -> None:
    outcome, rep = await _dispatch(test_services, "fail")
    assert outcome.status == "failed"
    statuses = [(s.name, s.status) for s in rep.final.steps]
    assert statuses == [("Break", "failed"), ("Never", "pending"), ("Cleanup", "succeeded")]
    # The summary (and the audit record) says what failed and what the cleanup did.
    assert rep.final.summary == "Break failed: it broke; then Cleanup: echo cleanup"
    assert [b.label for b in rep.final.buttons] == ["Retry"]
    final = list(test_services.store.export_audit())[-1]
    assert (final["outcome"], final["details"]["detail"]) == ("failed", rep.final.summary)


async def test_a_failed_cleanup_is_named_in_the_summary(test_services: Services) -> None:
    outcome, rep = await _dispatch(test_services, "failtwice")
    assert outcome.status == "failed"
    assert rep.final.summary == "Break failed: it broke; then Undo failed too: it broke"


async def test_handler_bug_reports_without_leaking(test_services: Services) -> None:
    outcome, rep = await _dispatch(test_services, "crash")
    assert outcome.status == "failed"
    summary = rep.final.steps[0].summary
    assert "internal error" in summary and "secret-internal-detail" not in summary


async def test_secret_parameters_are_redacted(test_services: Services) -> None:
    outcome, rep = await _dispatch(test_services, "echo hi --token s3cr3t-value")
    record = test_services.store.get_execution(outcome.execution_id)
    assert record is not None
    assert "s3cr3t-value" not in record.command and record.params["token"] == "***"
    assert "s3cr3t-value" not in rep.final.command
    exported = "".join(str(r) for r in test_services.store.export_audit())
    assert "s3cr3t-value" not in exported


async def test_audit_records_start_and_outcome(test_services: Services) -> None:
    outcome, _ = await _dispatch(test_services, "echo audit")
    records = [
        r for r in test_services.store.export_audit() if r["execution_id"] == outcome.execution_id
    ]
    assert [r["outcome"] for r in records] == ["started", "succeeded"]
    assert records[0]["command"] == "echo audit" and records[0]["source"] == "console"
    assert test_services.store.verify_audit() == []


async def test_without_an_approval_service_prod_changes_are_refused(
    test_services: Services,
) -> None:
    test_services.dispatcher.approvals = None  # a dispatcher built without Services
    outcome, rep = await _dispatch(test_services, "fail --env prod")
    assert outcome.status == "refused" and outcome.execution_id is None
    assert "no approval service" in rep.notices[0].text
    assert CALLS == []
    audit = test_services.store.export_audit()
    assert [(r["outcome"], r["environment"]) for r in audit] == [("refused", "prod")]
    outcome, rep = await _dispatch(test_services, "pending")
    assert outcome.status == "refused"
    assert "approval commands are unavailable" in rep.notices[0].text


async def test_pending_needs_a_role(test_services: Services) -> None:
    outcome, rep = await _dispatch(test_services, "pending", user="U0NOBODY")
    assert outcome.status == "denied"
    assert "holds no role" in rep.notices[0].text
    outcome, rep = await _dispatch(test_services, "pending", user="U0MALLORY")  # a viewer
    assert outcome.status == "info" and rep.notices[0].text == "Pending approval requests"


class _LockAtEnd(RecordingReporter):
    """Notes whether the target is still locked when the end of the run is reported."""

    def __init__(self, services: Services, target: str) -> None:
        super().__init__()
        self.services, self.target = services, target
        self.held_at_end: list[object] = []

    async def execution(self, view: ExecutionView) -> None:
        await super().execution(view)
        if view.finished:
            self.held_at_end.append(self.services.store.get_lock(self.target))


async def test_the_lock_is_free_before_anyone_hears_the_run_is_over(
    test_services: Services,
) -> None:
    # A person who reads "done" and sends the next command must not be refused as busy.
    rep = _LockAtEnd(test_services, "staging/shop-web")
    trigger = Trigger(source="console", actor="U0ALICE", text="touch shop-web")
    outcome = await test_services.dispatcher.dispatch(trigger, rep)
    assert outcome.status == "succeeded"
    assert rep.held_at_end == [None]
    outcome, _ = await _dispatch(test_services, "touch shop-web")
    assert outcome.status == "succeeded"


async def test_a_step_that_refuses_before_any_change_refuses_the_run(
    test_services: Services,
) -> None:
    outcome, rep = await _dispatch(test_services, "noop")
    assert outcome.status == "refused" and outcome.execution_id == rep.final.execution_id
    assert [(s.name, s.status) for s in rep.final.steps] == [("Look", "refused"),
                                                            ("Change", "pending")]
    assert rep.final.status == "refused"
    assert rep.final.summary == "nothing to do here (try another day)"
    assert rep.final.buttons == [] and CALLS == []  # no cleanup, no follow-up
    record = test_services.store.get_execution(outcome.execution_id)
    assert record is not None and record.status == "refused"
    assert [(s.name, s.status) for s in record.steps] == [("Look", "refused")]
    audit = [r for r in test_services.store.export_audit()
             if r["execution_id"] == outcome.execution_id]
    assert [r["outcome"] for r in audit] == ["started", "refused"]
    # A dry run changes nothing, so its refusal is a refusal too.
    outcome, rep = await _dispatch(test_services, "noop --dry-run")
    assert outcome.status == "refused" and rep.final.status == "refused"


async def test_a_refusal_after_a_change_began_is_a_failure(test_services: Services) -> None:
    outcome, rep = await _dispatch(test_services, "late")
    assert outcome.status == "failed"
    assert [(s.name, s.status) for s in rep.final.steps] == [
        ("Change", "succeeded"), ("Look", "failed"), ("Cleanup", "succeeded")]
    assert [c["text"] for c in CALLS] == ["first", "cleanup"]
    assert rep.final.summary == "Look failed: nothing to do here; then Cleanup: echo cleanup"
    # In a dry run nothing changed before it: there it is a refusal.
    CALLS.clear()
    outcome, rep = await _dispatch(test_services, "late --dry-run")
    assert outcome.status == "refused"
    assert [c["text"] for c in CALLS] == ["first"]


async def test_a_check_that_did_not_run_is_not_checked_not_passed(
    test_services: Services,
) -> None:
    outcome, rep = await _dispatch(test_services, "unchecked")
    assert outcome.status == "succeeded"  # a policy that refuses on it comes later
    assert [(s.name, s.status) for s in rep.final.steps] == [("Look", "not_checked"),
                                                            ("Policy", "succeeded")]
    # Templates see what was not checked, so a later step (a policy) can act on it.
    assert [c["text"] for c in CALLS] == ["Look: alerts (no URL)"]
    assert rep.final.summary == "1 not checked: Look: alerts (no URL)"
    record = test_services.store.get_execution(outcome.execution_id)
    assert record is not None and record.status == "succeeded"
    assert [s.status for s in record.steps] == ["not_checked", "succeeded"]
    final = [r for r in test_services.store.export_audit()
             if r["execution_id"] == outcome.execution_id][-1]
    assert final["details"]["detail"].endswith("; 1 not checked: Look: alerts (no URL)")


async def test_cancelled_execution_is_marked_interrupted(test_services: Services) -> None:
    rep = RecordingReporter()
    trigger = Trigger(source="console", actor="U0ALICE", text="hang")
    task = asyncio.create_task(test_services.dispatcher.dispatch(trigger, rep))
    async with asyncio.timeout(30):  # a test that cannot start must fail, not hang
        while not rep.views or rep.final.steps[0].status != "running":
            assert not task.done(), task.result()
            await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert rep.final.status == "interrupted"
    record = test_services.store.get_execution(rep.final.execution_id)
    assert record is not None and record.status == "interrupted"


async def test_crash_mid_run_is_reported_after_restart_not_repeated(
    test_services: Services, offline_settings: Settings
) -> None:
    # A process died with an execution running: the record stays 'running' in the store.
    store = test_services.store
    ex_id = store.create_execution(
        runbook="hang",
        source="console",
        actor="U0ALICE",
        command="hang",
        environment="staging",
        target=None,
        params={},
        dry_run=False,
    )
    store.start_step(ex_id, index=0, name="Hang", handler="test.hang")
    interrupted = await test_services.recover()
    assert interrupted == [ex_id]
    record = store.get_execution(ex_id)
    assert record is not None and record.status == "interrupted"
    assert await test_services.recover() == []  # never re-run, never reported twice
    audit = [r for r in store.export_audit() if r["execution_id"] == ex_id]
    assert [r["outcome"] for r in audit] == ["interrupted"]


async def test_help_lists_only_what_user_may_run(test_services: Services) -> None:
    _, alice = await _dispatch(test_services, "help", user="U0ALICE")
    _, mallory = await _dispatch(test_services, "help", user="U0MALLORY")
    alice_text = "\n".join(alice.notices[0].details)
    mallory_text = "\n".join(mallory.notices[0].details)
    assert "scale <app> <replicas>" in alice_text
    assert "scale" not in mallory_text and "status <app>" in mallory_text


async def test_help_topic(test_services: Services) -> None:
    _, rep = await _dispatch(test_services, "help scale")
    notice = rep.notices[0]
    assert "usage: `scale <app> <replicas>`" in notice.details


async def test_unknown_verb_suggests(test_services: Services) -> None:
    outcome, rep = await _dispatch(test_services, "stauts shop-api")
    assert outcome.status == "usage"
    assert "did you mean `status`" in rep.notices[0].text
