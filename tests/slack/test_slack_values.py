"""Values reach people in Slack as typed, through the running server: commands, reasons, names
and deny reasons holding markup, mentions, links, emoji and newlines are shown literally (no
bold, no ping, no link), and values of hostile size still give a message Slack accepts.

What a person sees is read with `tests/support/block_kit.shown`; the Slack stand-in refuses
blocks over Slack's limits, so a message that arrives is one Slack would have taken.
"""

from __future__ import annotations

from typing import Any

from tests.support.block_kit import pings, shown, text_objects
from tests.support.slack_standin import Message, SlackDriver, button

HOSTILE = "*b* _i_ ~s~ `tick` <x> & &amp; <!channel> <@U123> <http://x|y> :fire: a_b*c"


def seen(message: Message) -> str:
    """What people see of a message: its blocks, as Slack shows them; nothing pings."""
    texts = list(text_objects(message.blocks))
    assert not [p for t in texts for p in pings(t["text"])]
    assert not pings(message.text)
    return "\n".join(shown(t["text"]) for t in texts)


def test_a_reason_and_a_cron_show_as_typed(bot: SlackDriver) -> None:
    """Issue 10, item 3: a `*` or `_` in a value formatted the message instead of showing."""
    command = f"status shop-api --reason '{HOSTILE}'"
    bot.send_command("alice", command)
    # A code span cannot hold a backtick: the command shows as typed between backticks.
    message = bot.slack.wait_message(lambda m: f"`{command}` in staging: done" in shown(m.text))
    people = seen(message)
    assert f"reason: {HOSTILE}" in people
    assert f"`{command}` in staging: done" in people

    bot.send_command("bob", 'backup schedule shop-api "0 3 * * *"')
    schedule = bot.finished('backup schedule shop-api "0 3 * * *"')
    assert "created schedule shop-api-staging: '0 3 * * *'" in seen(schedule)
    assert "Cron\n0 3 * * *" in seen(schedule)
    assert bot.slack.rejected == []


def test_an_unknown_name_is_quoted_back_as_typed(bot: SlackDriver) -> None:
    bot.send_command("alice", "status *shop*_<api>&")
    answer = bot.slack.wait_for(lambda c: c.method == "chat.postEphemeral")
    people = "\n".join(shown(t["text"]) for t in text_objects(answer.params["blocks"]))
    assert "*shop*_<api>& is not a valid app name" in people


def test_a_request_and_its_denial_show_reasons_as_typed(bot: SlackDriver) -> None:
    command = f"restart shop-api --env prod --reason '{HOSTILE}'"
    bot.send_command("alice", command)
    message = bot.slack.wait_message(lambda m: "awaiting approval" in m.text)
    assert f"Requested by alice: {HOSTILE}" in seen(message)

    assert bot.click("bob", message, "Deny").status_code == 200
    form = bot.slack.wait_view()
    assert HOSTILE in "\n".join(shown(t["text"]) for t in text_objects(form["blocks"]))
    reason = f"{HOSTILE}\n> not a quote\n```\nnot code\n```"
    inputs: dict[str, Any] = next(b for b in form["blocks"] if b["type"] == "input")
    values = {inputs["block_id"]: {inputs["element"]["action_id"]: {
        "type": "plain_text_input", "value": reason}}}
    assert bot.submit("bob", form, values).status_code == 200
    denied = bot.slack.wait_message(lambda m: m.ts == message.ts and ": denied" in m.text)
    assert "Denied by bob at " in seen(denied) and f": {reason}" in seen(denied)
    told = bot.slack.wait_for(lambda c: c.method == "chat.postEphemeral"
                              and c.params.get("user") == "U0ALICE" and "denied" in c.text)
    assert reason in "\n".join(shown(t["text"]) for t in text_objects(told.params["blocks"]))
    assert bot.slack.rejected == []


def test_values_of_hostile_size_still_give_a_message(bot: SlackDriver) -> None:
    """A block over 3,000 characters made Slack refuse the whole message."""
    reason = "why " * 900
    bot.send_command("alice", f"status shop-api --reason '{reason}'")
    message = bot.slack.wait_message(
        lambda m: m.text.split("\n")[0].endswith(": done") and "status shop-api" in m.text)
    assert "…" in seen(message)
    assert button(message, "Diagnose")["value"] == "diag shop-api --env staging"
    assert bot.slack.rejected == []
