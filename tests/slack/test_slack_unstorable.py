"""Text the store cannot keep (NUL, lone surrogates) typed into Slack, in a slash command, a
button's value or the deny form: refused before anything runs or is stored, with the same
answer on SQLite and PostgreSQL (which refuses it where SQLite kept it)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.services import Services
from bot.slack.blocks import ACTION_PREFIX
from simcluster import SimCluster
from tests.support.databases import demo_server
from tests.support.signing import block_actions_body, signed_headers
from tests.support.slack_standin import (
    CHANNEL,
    SlackDriver,
    SlackStandIn,
    button,
)

REFUSAL = "which opsbot cannot record, so nothing ran"


@pytest.fixture
def on_backend(sim: SimCluster, slack: SlackStandIn, tmp_path: Path,
               database_url: str) -> Iterator[tuple[SlackDriver, Services]]:
    with demo_server(sim, slack, tmp_path, database_url) as both:
        yield both


def replicas(sim: SimCluster, name: str) -> int:
    obj = sim.get(f"/apis/apps/v1/namespaces/shop-staging/deployments/{name}")
    assert obj is not None
    return int(obj["spec"]["replicas"])


def nothing_stored(services: Services) -> bool:
    return (services.store.recent_executions(10) == []
            and services.store.audit_records(limit=10) == [])


def test_a_slash_command_with_it_runs_nothing(
        on_backend: tuple[SlackDriver, Services], sim: SimCluster) -> None:
    """A NUL (`%00`); a form body cannot carry a lone surrogate, JSON payloads can (below)."""
    bot, services = on_backend
    assert bot.send_command("alice", "scale shop-web 3 --reason a\x00b").status_code == 200
    assert "nothing ran" in bot.ephemeral("alice", lambda text: REFUSAL in text)
    assert replicas(sim, "shop-web") == 2
    assert nothing_stored(services)


def test_a_button_value_with_it_runs_nothing(
        on_backend: tuple[SlackDriver, Services], sim: SimCluster) -> None:
    bot, services = on_backend
    action = {"type": "button", "action_id": f"{ACTION_PREFIX}forged",
              "text": {"type": "plain_text", "text": "Scale"},
              "value": "scale shop-web 3 --reason \ud800"}
    body = block_actions_body("U0ALICE", action, channel_id=CHANNEL, message={
        "type": "message", "ts": f"{time.time():.6f}", "text": "x", "blocks": []})
    assert bot.post(body, signed_headers(body, bot.secret)).status_code == 200
    bot.ephemeral("alice", lambda text: REFUSAL in text)
    assert replicas(sim, "shop-web") == 2
    assert nothing_stored(services)


def test_the_deny_form_asks_again_without_it(
        on_backend: tuple[SlackDriver, Services]) -> None:
    bot, services = on_backend
    assert bot.send_command("alice", "scale shop-api 5 --env prod").status_code == 200
    message = bot.slack.wait_message(lambda m: "awaiting approval" in m.text)
    request_id = str(button(message, "Deny")["value"])
    assert bot.click("bob", message, "Deny").status_code == 200
    form = bot.slack.wait_view()
    field = next(b for b in form["blocks"] if b["type"] == "input")
    block_id, action_id = field["block_id"], field["element"]["action_id"]
    for poison in ("\x00", "\udfff"):
        answer = bot.submit("bob", form, {block_id: {action_id: {
            "type": "plain_text_input", "value": f"not now{poison}"}}})
        assert answer.json()["response_action"] == "errors"
        assert REFUSAL in answer.json()["errors"][block_id]
    request = services.store.get_request(request_id)
    assert request is not None and request.pending
    answer = bot.submit("bob", form, {block_id: {action_id: {
        "type": "plain_text_input", "value": "not now"}}})
    assert answer.status_code == 200
    bot.slack.wait_message(lambda m: m.ts == message.ts and ": denied" in m.text)
