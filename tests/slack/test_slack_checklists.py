"""Checklists in Slack, from outside: the Approve button of a request with a checklist opens a
dialog listing it, the request runs only once every item is ticked, and the finished change
posts its post-change checklist in its thread for the requester to tick (each tick audited)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import yaml

from bot.config import Settings, settings_from_mapping
from bot.services import Services
from simcluster import SimCluster
from tests.slack.conftest import slack_environ
from tests.slack.test_slack_approvals import DEMO_CONFIG, replicas, request
from tests.support.alert_chain import wait_until
from tests.support.signing import signed_headers
from tests.support.slack_standin import (
    BOT_USER,
    CHANNEL,
    DEFAULT_TIMEOUT,
    USERS,
    Message,
    SlackDriver,
    SlackStandIn,
    button,
)

BEFORE = ["Release notes read", "Migration is backward compatible"]
AFTER = ["Smoke-test the checkout page", "Watch the error ratio for 15 minutes"]


@pytest.fixture
def settings(sim: SimCluster, slack: SlackStandIn, tmp_path: Path) -> Settings:
    raw = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    raw["base_dir"] = str(DEMO_CONFIG.parent)
    raw["environments"]["prod"]["checklist"] = {"before": BEFORE, "after": AFTER,
                                                "runbooks": ["scale"]}
    return settings_from_mapping(raw, environ=slack_environ(sim, slack, tmp_path))


def ticks(form: dict[str, Any], numbers: list[int]) -> dict[str, Any]:
    [field] = [b for b in form["blocks"] if b["type"] == "input"]
    options = field["element"]["options"]
    chosen = [o for o in options if int(o["value"]) in numbers]
    return {field["block_id"]: {field["element"]["action_id"]: {
        "type": "checkboxes", "selected_options": chosen}}}


def tick(bot: SlackDriver, user: str, message: Message, numbers: list[int]) -> int:
    """`user` ticks boxes of the checklist message (Slack sends every ticked option)."""
    [actions] = [b for b in message.blocks if b["type"] == "actions"]
    element = actions["elements"][0]
    user_id = USERS.get(user, user)
    payload = {
        "type": "block_actions",
        "user": {"id": user_id, "username": user_id.lower(), "team_id": "T0OPSBOT"},
        "api_app_id": "A0OPSBOT",
        "token": "deprecated-verification-token",
        "container": {"type": "message", "message_ts": message.ts, "channel_id": message.channel,
                      "is_ephemeral": False},
        "trigger_id": f"{time.monotonic_ns()}.standin.tick",
        "team": {"id": "T0OPSBOT", "domain": "standin"},
        "channel": {"id": message.channel, "name": "ops"},
        "message": {"type": "message", "ts": message.ts, "text": message.text,
                    "blocks": message.blocks, "user": BOT_USER, "thread_ts": message.thread_ts},
        "actions": [{"type": "checkboxes", "action_id": element["action_id"],
                     "block_id": actions["block_id"],
                     "selected_options": [o for o in element["options"]
                                          if int(o["value"]) in numbers],
                     "action_ts": f"{time.time():.6f}"}],
    }
    body = urlencode({"payload": json.dumps(payload)})
    return bot.post(body, signed_headers(body, bot.secret)).status_code


def audit(services: Services, outcome: str) -> list[dict[str, Any]]:
    return [r for r in services.store.export_audit() if r["outcome"] == outcome]


def test_approve_opens_the_checklist_and_needs_every_item(
    bot: SlackDriver, services: Services, sim: SimCluster,
) -> None:
    message, request_id = request(bot)
    assert "Checklist" in message.text and "☐ 2. Migration is backward compatible" in message.text
    approve = button(message, "Approve")
    assert approve["action_id"] == "opsbot_approve_checklist" and "confirm" not in approve

    assert bot.click("bob", message, "Approve").status_code == 200
    form = bot.slack.wait_view()
    assert form["callback_id"] == "opsbot_approve_modal"
    assert form["private_metadata"] == f"{request_id}|{CHANNEL}"
    [field] = [b for b in form["blocks"] if b["type"] == "input"]
    assert [o["text"]["text"] for o in field["element"]["options"]] == BEFORE

    partly = bot.submit("bob", form, ticks(form, [1]))
    assert partly.json()["response_action"] == "errors"  # the form stays open
    assert replicas(sim) == 3
    stored = services.store.get_request(request_id)
    assert stored is not None and stored.status == "pending" and stored.approvals == []

    done = bot.submit("bob", form, ticks(form, [1, 2]))
    assert done.status_code == 200 and done.text in ("", "null")
    wait_until(lambda: replicas(sim) == 5, timeout=DEFAULT_TIMEOUT)
    [approved] = wait_until(lambda: audit(services, "approved"), timeout=DEFAULT_TIMEOUT)
    assert approved["actor"] == "U0BOB" and approved["details"]["confirmed"] == BEFORE


def test_a_typed_approve_without_the_items_is_refused(
    bot: SlackDriver, services: Services, sim: SimCluster,
) -> None:
    _, request_id = request(bot)
    assert bot.send_command("bob", f"approve {request_id}").status_code == 200
    told = bot.ephemeral("bob", lambda text: "checklist" in text)
    assert "approving needs every item confirmed" in told
    assert f"approve {request_id} --confirm 1,2" in told
    assert replicas(sim) == 3


def test_the_finished_change_posts_its_checklist_for_the_requester(
    bot: SlackDriver, services: Services, sim: SimCluster,
) -> None:
    _, request_id = request(bot)
    assert bot.send_command("bob", f"approve {request_id} --confirm 1,2").status_code == 200
    checklist = bot.slack.wait_message(lambda m: "After the change" in m.text)
    # The checklist is the run's last message; the request records its run just after.
    executed = wait_until(lambda: (r := services.store.get_request(request_id))
                          and r.execution_id, timeout=DEFAULT_TIMEOUT)
    run = services.store.get_execution(executed)
    assert run is not None and run.ts is not None
    # In the change's thread (an approved change reports in its request's thread)
    thread = bot.slack.messages[run.ts].thread_ts or run.ts
    assert checklist.thread_ts == thread
    [actions] = [b for b in checklist.blocks if b["type"] == "actions"]
    assert [o["text"]["text"] for o in actions["elements"][0]["options"]] == AFTER

    # Only the requester's ticks count.
    assert tick(bot, "bob", checklist, [1]) == 200
    assert "Only alice" in bot.ephemeral("bob", lambda text: "Only" in text)
    assert audit(services, "checklist") == []

    assert tick(bot, "alice", checklist, [1]) == 200
    [first] = audit(services, "checklist")
    assert first["actor"] == "U0ALICE" and first["execution_id"] == run.id
    assert first["details"] == {"ticked": [f"1. {AFTER[0]}"], "of": 2}
    assert tick(bot, "alice", checklist, [1, 2]) == 200
    bot.slack.wait_message(lambda m: "ticked 2 of 2: all done" in m.text
                           and m.thread_ts == thread)
    assert len(audit(services, "checklist")) == 2
