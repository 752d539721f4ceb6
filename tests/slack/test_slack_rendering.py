"""Block Kit rendering and thread output without a server: limits respected, nothing cut
silently, data escaped so a pod log cannot ping a channel."""

from __future__ import annotations

from bot.reporting import Button, ExecutionView, Notice, StepView
from bot.slack.blocks import execution_blocks, execution_text, notice_blocks, split_text
from bot.slack.output import MAX_MESSAGES, MESSAGE_LIMIT, output_messages


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


def test_execution_blocks_have_headline_context_steps_fields_and_buttons() -> None:
    rendered = execution_blocks(view(buttons=[Button("Diagnose", "diag shop-api")]))
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
    rendered = execution_blocks(view(buttons=[Button("Run", "x" * 2001),
                                              Button("Ok", "status shop-api")]))
    elements = [e for b in rendered if b["type"] == "actions" for e in b["elements"]]
    assert [e["value"] for e in elements] == ["status shop-api"]
    assert elements[0]["action_id"] == "opsbot_run_1"


def test_data_is_escaped_but_our_markup_is_not() -> None:
    step = StepView("Diagnose", "failed", "<!channel> & friends")
    rendered = str(execution_blocks(view(steps=[step], status="failed")))
    assert "&lt;!channel&gt; &amp; friends" in rendered
    assert "<!channel>" not in rendered
    assert "*staging*" in rendered


def test_long_texts_span_several_blocks_within_limits() -> None:
    summary = "\n".join(f"problem {i} " + "x" * 90 for i in range(100))
    rendered = execution_blocks(view(summary=summary))
    sections = [b["text"]["text"] for b in rendered if b["type"] == "section" and "text" in b]
    assert all(len(s) <= 3000 for s in sections)
    assert "\n".join(s for s in sections if s.startswith("problem")) == summary
    many = [StepView(f"step {i}", "succeeded", fields=(("k", "v"),)) for i in range(60)]
    assert len(execution_blocks(view(steps=many))) <= 50


def test_split_text_cuts_at_line_ends_and_inside_a_line_only_when_it_must() -> None:
    assert split_text("aa\nbb\ncc", 5) == ["aa\nbb", "cc"]
    assert split_text("abcdefghij", 4) == ["abcd", "efgh", "ij"]
    assert "".join(split_text("x" * 10_000, 3000)) == "x" * 10_000


def test_output_is_split_into_code_blocks_and_the_rest_is_counted() -> None:
    lines = [f"{i:05d} " + "y" * 94 for i in range(1000)]  # 100 characters a line
    replies = output_messages("Diagnose", "\n".join(lines), "ex-9")
    assert len(replies) == MAX_MESSAGES + 1
    assert all(len(r) <= MESSAGE_LIMIT for r in replies)
    blocks = replies[:MAX_MESSAGES]
    assert all(r.startswith("*Diagnose* output (") and r.endswith("```") for r in blocks)
    shown = [line for r in blocks for line in r.split("\n")[2:-1]]
    assert shown == lines[: len(shown)]  # whole lines, in order, none cut
    assert replies[-1] == (f"{1000 - len(shown)} more lines of *Diagnose* output left out of "
                           "this thread; the full output is stored with execution `ex-9`.")


def test_short_output_is_one_block_and_a_giant_line_is_cut_not_lost() -> None:
    short = output_messages("Logs", "a <b>\nc", "ex-1")
    assert short == ["*Logs* output\n```\na &lt;b&gt;\nc\n```"]
    giant = "z" * 8000
    replies = output_messages("Logs", giant, "ex-1")
    assert len(replies) == 3 and all(len(r) <= MESSAGE_LIMIT for r in replies)
    assert "".join(r.split("\n")[2] for r in replies) == giant
    fenced = output_messages("Logs", "```rm -rf```", "ex-1")[0]
    assert fenced.count("```") == 2


def test_notice_blocks_carry_details_and_hint() -> None:
    notice = Notice("denied", "mallory may not run `scale`", hint="ask an admin",
                    details=("one", "two"))
    rendered = notice_blocks(notice)
    assert rendered[0]["text"]["text"] == "⛔ mallory may not run `scale`"
    assert rendered[1]["text"]["text"] == "one\ntwo"
    assert rendered[2] == {"type": "context",
                           "elements": [{"type": "mrkdwn", "text": "ask an admin"}]}


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
