"""Block Kit rendering and thread output without a server: every builder's blocks pass Slack's
limits (tests/support/block_kit.py) at hostile sizes, values show as typed (nothing they hold
formats, pings or links), and whatever is cut is cut visibly, never inside a character, an
entity or a token."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from bot.alerts.view import AlertGroupView, AlertLine, RunLine
from bot.approvals.view import ApprovalView
from bot.markup import bold, code, plain
from bot.reporting import Button, ExecutionView, Notice, StepView
from bot.slack.blocks import (
    alert_group_blocks,
    alert_group_text,
    approval_blocks,
    approval_text,
    deny_modal,
    execution_blocks,
    execution_text,
    message_text,
    notice_blocks,
    notice_text,
)
from bot.slack.mrkdwn import chunks, fit, mrkdwn
from bot.slack.output import MAX_MESSAGES, MESSAGE_LIMIT, output_messages
from tests.support.block_kit import (
    message_problems,
    modal_problems,
    pings,
    shown,
    text_objects,
    units,
)

# What people, alerts and the cluster may send: markup of every kind, mentions, links, emoji.
HOSTILE = ("*bold* _it_ ~gone~ `tick` ``` <b> & &amp; <!channel> <!here> <@U123> "
           "<http://x|y> <#C999> :fire: a_b*c 0 3 * * *")
HOSTILE_LINES = f"{HOSTILE}\n> quoted\n```\nrm -rf /\n```"
BIG = "x" * 5000


def view(**changes: object) -> ExecutionView:
    base = ExecutionView(
        execution_id="ex-1", runbook="status", command="status shop-api", actor="alice",
        environment="staging", target="shop-api", dry_run=False, status="succeeded",
        steps=[StepView("Read workload", "succeeded", "3/3 ready",
                        fields=(("Replicas", "3/3"), ("Image (api)", "api:1.4.0")),
                        output="line\n" * 50)],
    )
    for key, value in changes.items():
        setattr(base, key, value)
    return base


def approval(**changes: Any) -> ApprovalView:
    base = ApprovalView(
        request_id="rq-01TEST", command="scale shop-api 5 --env prod", environment="prod",
        requester="alice", reason="traffic", plan=("would scale shop-api from 3 to 5",),
        required=1, approvals=(), approvers="@sre-approvers",
        expires_at=datetime(2030, 1, 1, tzinfo=UTC), status="pending", denial=None,
        note=None, channel="C0OPS", ts="1.2", execution_id=None,
    )
    return ApprovalView(**{**base.__dict__, **changes})


def alert(name: str, summary: str = "", status: str = "firing") -> AlertLine:
    return AlertLine(fingerprint=name[:16], name=name, status=status, severity="critical",
                     summary=summary, where="shop-api in staging", starts_at="03:12",
                     ends_at=None)


def group(**changes: Any) -> AlertGroupView:
    base = AlertGroupView(group_hash="g1", title="KubePodCrashLooping in staging",
                          status="firing", alerts=[alert("KubePodCrashLooping", "restarts")])
    for key, value in changes.items():
        setattr(base, key, value)
    return base


def valid(blocks: list[dict[str, Any]], text: str = "fallback") -> list[dict[str, Any]]:
    """The blocks, once Slack would take them as a message."""
    assert message_problems(blocks, text) is None, message_problems(blocks, text)
    return blocks


def seen(blocks: Any) -> str:
    """Everything a person sees of the blocks, text object by text object."""
    texts = list(text_objects(blocks))
    for obj in texts:
        if obj["type"] == "mrkdwn":
            assert not pings(obj["text"]), obj["text"]
    return "\n".join(shown(t["text"]) if t["type"] == "mrkdwn" else t["text"] for t in texts)


# The layout ---------------------------------------------------------------------------------


def test_execution_blocks_have_headline_context_steps_fields_and_buttons() -> None:
    rendered = valid(execution_blocks(view(buttons=[Button("Diagnose", "diag shop-api")])))
    texts = [b.get("text", {}).get("text", "") for b in rendered]
    assert texts[0] == "✅ `status shop-api` in *staging*: done"
    assert rendered[1]["type"] == "context" and "execution `ex-1`" in str(rendered[1])
    assert "✅ Read workload: 3/3 ready" in texts
    fields = [f["text"] for b in rendered for f in b.get("fields", [])]
    assert fields == ["*Replicas*\n3/3", "*Image (api)*\napi:1.4.0"]
    actions = rendered[-1]
    assert actions["type"] == "actions"
    assert actions["elements"][0]["action_id"] == "opsbot_run_0"
    assert actions["elements"][0]["value"] == "diag shop-api"
    assert "line" not in str(rendered)  # output goes to the thread, not the message
    assert execution_text(view()).startswith("✅ `status shop-api` in *staging*: done")


def test_a_command_too_long_for_a_button_is_not_offered_cut() -> None:
    rendered = valid(execution_blocks(view(buttons=[Button("Run", "x" * 2001),
                                                    Button("Ok", "status shop-api")])))
    elements = [e for b in rendered if b["type"] == "actions" for e in b["elements"]]
    assert [e["value"] for e in elements] == ["status shop-api"]
    assert elements[0]["action_id"] == "opsbot_run_1"


def test_long_texts_span_several_blocks_within_limits() -> None:
    summary = "\n".join(f"problem {i} " + "x" * 90 for i in range(100))
    rendered = valid(execution_blocks(view(summary=summary)))
    sections = [b["text"]["text"] for b in rendered if b["type"] == "section" and "text" in b]
    assert all(len(s) <= 3000 for s in sections)
    assert "\n".join(s for s in sections if s.startswith("problem")) == summary
    many = [StepView(f"step {i}", "succeeded", fields=(("k", "v"),)) for i in range(60)]
    assert len(valid(execution_blocks(view(steps=many)))) <= 50


def test_notice_blocks_carry_details_and_hint() -> None:
    notice = Notice("denied", f"mallory may not run {code('scale')}", hint="ask an admin",
                    details=("one", "two"))
    rendered = valid(notice_blocks(notice))
    assert rendered[0]["text"]["text"] == "⛔ mallory may not run `scale`"
    assert rendered[1]["text"]["text"] == "one\ntwo"
    assert rendered[2] == {"type": "context", "elements": [
        {"type": "mrkdwn", "text": "ask an admin", "verbatim": True}]}


def test_request_blocks_drop_buttons_once_closed_and_fit_the_confirm_dialog() -> None:
    open_blocks = valid(approval_blocks(approval()))
    assert [e["action_id"] for b in open_blocks if b["type"] == "actions"
            for e in b["elements"]] == ["opsbot_approve", "opsbot_deny"]
    for status in ("approved", "executed", "denied", "expired", "cancelled", "void"):
        assert not [b for b in approval_blocks(approval(status=status))
                    if b["type"] == "actions"]
    confirm = valid(approval_blocks(approval(command="deploy shop-api " + "x" * 1000)))[-1]
    assert len(confirm["elements"][0]["confirm"]["text"]["text"]) <= 300


# Values show as typed -----------------------------------------------------------------------


def test_markup_is_ours_and_values_show_as_typed() -> None:
    text = f"{code('0 3 * * *')} in {bold('staging')}: {HOSTILE}"
    rendered = mrkdwn(text)
    assert rendered.startswith("`0 3 * * *` in *staging*: ")
    assert shown(rendered) == f"0 3 * * * in staging: {HOSTILE}"
    assert not pings(rendered) and "<!channel>" not in rendered
    assert plain(text) == f"`0 3 * * *` in staging: {HOSTILE}"  # the console: byte for byte
    # A value cannot end our span early or open one of its own.
    assert shown(mrkdwn(bold(HOSTILE))) == HOSTILE
    assert shown(mrkdwn(code("a`b"))) == "`a`b`"  # no code span holds a backtick: as typed
    assert shown(mrkdwn(HOSTILE_LINES)) == HOSTILE_LINES


def test_a_value_cannot_make_or_break_our_markup() -> None:
    forged = "\ue000boss\ue001 \ue006#C0OPS\ue007"  # our own delimiters, typed in
    assert plain(bold(forged)) == "boss #C0OPS"
    assert mrkdwn(f"{bold(forged)}") == "*boss #C0OPS*"


def test_every_execution_text_shows_values_as_typed() -> None:
    step = StepView(HOSTILE, "failed", HOSTILE_LINES, fields=((HOSTILE, HOSTILE_LINES),),
                    progress=HOSTILE)
    hostile = view(command=f"status {HOSTILE}", actor=HOSTILE, environment=HOSTILE,
                   reason=HOSTILE_LINES, status="failed", steps=[step], summary=HOSTILE_LINES,
                   buttons=[Button(HOSTILE, "diag shop-api")])
    blocks = valid(execution_blocks(hostile), execution_text(hostile))
    people = seen(blocks)
    assert people.count(HOSTILE) >= 6 and HOSTILE_LINES in people
    fallback = execution_text(hostile)
    assert not pings(fallback) and HOSTILE_LINES in shown(fallback)


def test_every_notice_text_shows_values_as_typed() -> None:
    notice = Notice("error", f"unknown app {code(HOSTILE)}", hint=HOSTILE,
                    details=(HOSTILE, HOSTILE_LINES))
    people = seen(valid(notice_blocks(notice)))
    assert f"unknown app `{HOSTILE}`" in people and HOSTILE_LINES in people
    assert HOSTILE_LINES in shown(notice_text(notice))


def test_every_request_text_shows_values_as_typed() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    hostile = approval(command=f"deploy {HOSTILE}", requester=HOSTILE, reason=HOSTILE_LINES,
                       plan=(HOSTILE, HOSTILE_LINES), approvals=((HOSTILE, now),),
                       approvers=HOSTILE, environment=HOSTILE, note=HOSTILE,
                       denial=(HOSTILE, HOSTILE_LINES, now))
    people = seen(valid(approval_blocks(hostile), approval_text(hostile)))
    assert people.count(HOSTILE) >= 8 and HOSTILE_LINES in people
    assert HOSTILE_LINES in shown(approval_text(hostile))
    modal = deny_modal("rq-01TEST", "C0OPS", HOSTILE)
    assert modal_problems(modal) == []
    assert HOSTILE in seen(modal["blocks"])


def test_every_alert_group_text_shows_values_as_typed() -> None:
    run = RunLine(runbook=HOSTILE, alertname=HOSTILE, target=HOSTILE, environment="staging",
                  decision="no_target", detail=HOSTILE, status="", execution_id=None,
                  request_id=None)
    hostile = group(title=HOSTILE, alerts=[alert(HOSTILE, HOSTILE_LINES)], runs=[run],
                    notes=[HOSTILE], buttons=[Button(HOSTILE, "diag shop-api")])
    people = seen(valid(alert_group_blocks(hostile), alert_group_text(hostile)))
    assert people.count(HOSTILE) >= 5 and HOSTILE_LINES in people
    assert HOSTILE in shown(alert_group_text(hostile))


def test_output_and_its_heading_show_as_typed() -> None:
    replies = output_messages(HOSTILE, HOSTILE_LINES, "ex-1")
    assert len(replies) == 1 and not pings(replies[0])
    heading, body = replies[0].split("\n", 1)
    assert shown(heading) == f"{HOSTILE} output"
    assert body.count("```") == 2  # the output's own fences cannot close ours
    assert message_problems(None, replies[0]) is None


# Hostile sizes ------------------------------------------------------------------------------


def test_an_execution_of_hostile_size_fits_and_says_it_was_cut() -> None:
    huge = view(command=BIG, actor=BIG, environment=BIG, reason=BIG, status="failed",
                steps=[StepView(BIG, "failed", BIG, fields=tuple((BIG, BIG) for _ in range(30)))
                       for _ in range(70)],
                summary=BIG * 3, buttons=[Button(BIG, "x")] * 60)
    blocks = valid(execution_blocks(huge), execution_text(huge))
    assert blocks[0]["text"]["text"].endswith(": failed")  # the verdict survives a long command
    assert "Slack takes no more in one message" in seen(blocks)
    assert "execution ex-1" in seen(blocks)
    assert any(b["type"] == "divider" for b in blocks)  # the summary keeps its place
    assert execution_text(huge).split("\n")[0].endswith(": failed")
    # Fewer but still too many steps, each with long fields: the same.
    some = view(steps=[StepView(f"step {i}", "succeeded", "ok",
                                fields=tuple((f"f{j}", "y" * 1990) for j in range(12)))
                       for i in range(30)], summary="all done")
    blocks = valid(execution_blocks(some))
    assert "all done" in seen(blocks)


def test_a_notice_of_hostile_size_fits() -> None:
    notice = Notice("info", BIG, hint=BIG, details=tuple(BIG for _ in range(100)))
    blocks = valid(notice_blocks(notice), notice_text(notice))
    assert "Slack takes no more in one message" in seen(blocks)


def test_a_request_of_hostile_size_fits_and_keeps_its_buttons() -> None:
    huge = approval(command=BIG, requester=BIG, reason=BIG, environment=BIG,
                    plan=tuple(BIG for _ in range(50)), approvers=BIG, note=BIG)
    blocks = valid(approval_blocks(huge), approval_text(huge))
    assert blocks[0]["text"]["text"].endswith(": awaiting approval")
    assert blocks[-1]["block_id"] == "opsbot_approval"
    assert "--dry-run before approving" in seen(blocks)
    assert modal_problems(deny_modal("rq-01TEST", "C0OPS", BIG)) == []


def test_an_alert_group_of_hostile_size_fits() -> None:
    """Issue 10, item 15: an alertname over 3,000 characters hid the whole group."""
    long_name = "A" * 3500
    one = group(title=f"{long_name} in staging", alerts=[alert(long_name, BIG)])
    blocks = valid(alert_group_blocks(one), alert_group_text(one))
    assert blocks[0]["text"]["text"].endswith("(1 firing, 0 resolved)")
    assert "…" in seen(blocks)
    runs = [RunLine(runbook="diag", alertname=long_name, target=BIG, environment=BIG,
                    decision="cooldown", detail=BIG, status="", execution_id=None,
                    request_id=None)] * 40
    many = group(title=BIG, alerts=[alert(f"{long_name}{i}", BIG) for i in range(500)],
                 runs=runs, notes=[BIG] * 20, buttons=[Button(BIG, "x")] * 40)
    blocks = valid(alert_group_blocks(many), alert_group_text(many))
    assert "… and 485 more" in seen(blocks) or "Slack takes no more" in seen(blocks)


def test_output_of_hostile_size_fits() -> None:
    replies = output_messages(BIG, "\n".join([BIG] * 50), "ex-1")
    assert len(replies) == MAX_MESSAGES + 1
    assert all(units(r) <= MESSAGE_LIMIT for r in replies)


# Cutting --------------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", range(20, 60))
def test_a_cut_never_splits_a_character_an_entity_or_a_token(limit: int) -> None:
    text = f"{bold('😀' * 10 + '&<>' * 5)} {code('a&b' * 5)} e\u0301e\u0301 👍🏽👍🏽 *_* :fire:"
    cut = fit(text, limit)
    assert units(cut) <= limit and cut.endswith("…")
    cut.encode("utf-8")  # a split surrogate pair would not encode
    assert cut.count("*") % 2 == 0 and cut.count("`") % 2 == 0  # open spans were closed
    assert shown(cut[:-1]) in shown(mrkdwn(text))  # a prefix of what shows, whole tokens
    assert not cut[:-1].endswith(("&", "&a", "&am", "&amp", "&l", "&lt", "<!date"))
    assert "\u0301" not in cut[-1:] and not cut[:-1].endswith("e")  # e and its accent stay


def test_chunks_cut_at_line_ends_and_inside_a_line_only_when_they_must() -> None:
    assert [c.text for c in chunks("aa\nbb\ncc", 5)] == ["aa\nbb", "cc"]
    assert [c.text for c in chunks("abcdefghij", 4)] == ["abcd", "efgh", "ij"]
    assert "".join(c.text for c in chunks("x" * 10_000, 3000)) == "x" * 10_000
    assert [c.text for c in chunks(bold("x" * 10), 6)] == ["*xxxx*", "*xxxx*", "*xx*"]


def test_message_text_is_cut_for_notifications() -> None:
    assert units(message_text(BIG * 10)) == 3000


def test_output_is_split_into_code_blocks_and_the_rest_is_counted() -> None:
    lines = [f"{i:05d} " + "y" * 94 for i in range(1000)]  # 100 characters a line
    replies = output_messages("Diagnose", "\n".join(lines), "ex-9")
    assert len(replies) == MAX_MESSAGES + 1
    assert all(len(r) <= MESSAGE_LIMIT for r in replies)
    blocks = replies[:MAX_MESSAGES]
    assert all(r.startswith("*Diagnose* output (") and r.endswith("```") for r in blocks)
    shown_lines = [line for r in blocks for line in r.split("\n")[2:-1]]
    assert shown_lines == lines[: len(shown_lines)]  # whole lines, in order, none cut
    assert replies[-1] == (f"{1000 - len(shown_lines)} more lines of *Diagnose* output left "
                           "out of this thread; the full output is stored with execution "
                           "`ex-9`.")


def test_short_output_is_one_block_and_a_giant_line_is_cut_not_lost() -> None:
    short = output_messages("Logs", "a <b>\nc", "ex-1")
    assert short == ["*Logs* output\n```\na &lt;b&gt;\nc\n```"]
    giant = "z" * 8000
    replies = output_messages("Logs", giant, "ex-1")
    assert len(replies) == 3 and all(len(r) <= MESSAGE_LIMIT for r in replies)
    assert "".join(r.split("\n")[2] for r in replies) == giant
    fenced = output_messages("Logs", "```rm -rf```", "ex-1")[0]
    assert fenced.count("```") == 2


def test_the_stand_in_refuses_what_slack_refuses() -> None:
    def section(text: str) -> dict[str, Any]:
        return {"type": "section", "text": {"type": "mrkdwn", "text": text}}

    def refused(blocks: list[dict[str, Any]] | None, text: str = "t") -> str | None:
        answer = message_problems(blocks, text)
        return answer[0] if answer else None

    assert refused([section("x" * 3000)]) is None
    assert refused([section("x" * 3001)]) == "invalid_blocks"
    assert refused([section("😀" * 1501)]) == "invalid_blocks"  # UTF-16 code units
    assert refused([section("\ud83d")]) == "invalid_blocks"  # half an emoji
    assert refused([section("")]) == "invalid_blocks"
    assert refused([section("x")] * 51) == "invalid_blocks"
    assert refused([section("x" * 2500)] * 5) == "msg_blocks_too_long"
    assert refused(None, "x" * 40_001) == "msg_too_long"
    assert refused([{"type": "section", "fields": [{"type": "mrkdwn", "text": "x" * 2001}]}])
    modal = deny_modal("rq-01TEST", None, "x")
    assert modal_problems({**modal, "title": {"type": "plain_text", "text": "x" * 25}})


def test_an_interrupted_message_keeps_the_honest_states_of_its_steps(tmp_path: object) -> None:
    """After a restart the message of an interrupted run is rebuilt from the stored steps:
    a step stored as not checked (or refused) must not turn into a failure there."""
    from pathlib import Path

    from bot.slack.recovery import interrupted_view
    from bot.store import Store

    store = Store.open(f"sqlite:///{Path(str(tmp_path)) / 'recovery.db'}")
    try:
        ex_id = store.create_execution(runbook="deploy", source="slack", actor="U0ALICE",
                                       command="deploy shop-api 1.5.0", environment="staging",
                                       target="shop-api", params={}, dry_run=False)
        store.start_step(ex_id, index=0, name="Pre-checks", handler="deploy.prechecks")
        store.finish_step(ex_id, index=0, status="not_checked",
                          summary="pre-checks passed; 1 not checked", output=None, error=None)
        store.start_step(ex_id, index=1, name="Roll out", handler="deploy.wait")
        store.interrupt_running("opsbot stopped")
        record = store.get_execution(ex_id)
        assert record is not None
        view = interrupted_view(record, "alice")
    finally:
        store.close()
    assert [(s.name, s.status) for s in view.steps] == [("Pre-checks", "not_checked"),
                                                        ("Roll out", "interrupted")]
    assert "❔ Pre-checks: pre-checks passed; 1 not checked" in str(execution_blocks(view))
