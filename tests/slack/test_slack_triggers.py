"""How Slack payloads become Triggers: who acts, what runs, where the answer goes, and the
delivery key that makes a replay run once."""

from __future__ import annotations

from typing import Any

from bot.slack.app import button_trigger, command_trigger


def click(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": "U0BOB"},
        "trigger_id": "123.456.abc",
        "channel": {"id": "C0OPS"},
        "container": {"type": "message", "message_ts": "17.000002", "channel_id": "C0OPS"},
        "message": {"ts": "17.000002", "text": "by alice", "user": "U0OPSBOT"},
    }
    body.update(changes)
    return body


ACTION = {"action_id": "opsbot_run_0", "value": "status shop-api --env staging",
          "action_ts": "17.5"}


def test_a_slash_command_is_a_trigger_from_its_signed_fields() -> None:
    trigger = command_trigger({"user_id": "U0ALICE", "text": "scale a 2 --reason x &gt; y",
                               "channel_id": "C0OPS", "trigger_id": "9.9.z"})
    assert (trigger.source, trigger.actor, trigger.channel, trigger.via) == (
        "slack", "U0ALICE", "C0OPS", "command")
    assert trigger.text == "scale a 2 --reason x > y"  # Slack's escaping undone
    assert trigger.delivery_id == "slack:9.9.z"


def test_a_click_runs_the_button_value_as_the_clicker_under_the_message() -> None:
    trigger, thread_ts = button_trigger(click(), ACTION)
    assert (trigger.actor, trigger.text, trigger.via) == (
        "U0BOB", "status shop-api --env staging", "button")
    assert trigger.delivery_id == "slack:123.456.abc"
    assert thread_ts == "17.000002"


def test_a_click_in_a_thread_answers_in_that_thread() -> None:
    body = click(message={"ts": "17.000009", "thread_ts": "17.000002", "user": "U0OPSBOT"})
    _, thread_ts = button_trigger(body, ACTION)
    assert thread_ts == "17.000002"


def test_without_trigger_id_the_message_and_action_ts_make_the_key() -> None:
    body = click()
    del body["trigger_id"]
    trigger, _ = button_trigger(body, ACTION)
    assert trigger.delivery_id == "slack:17.000002:17.5"


def test_a_click_on_an_ephemeral_message_is_not_threaded() -> None:
    body = click(container={"type": "message", "message_ts": "17.3", "channel_id": "C0OPS",
                            "is_ephemeral": True})
    del body["message"]
    trigger, thread_ts = button_trigger(body, ACTION)
    assert thread_ts is None and trigger.channel == "C0OPS"
