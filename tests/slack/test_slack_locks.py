"""`locks`, `executions` and `cancel <execution-id>` from Slack, through the real server (signed
slash commands, the Slack stand-in), on SQLite and PostgreSQL: a prod request reserves its
target, refusals name it, executions link to their messages."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.records import StoreRecords
from bot.services import Services
from simcluster import SimCluster
from tests.support.databases import demo_server
from tests.support.slack_standin import CHANNEL, SlackDriver, SlackStandIn, button


@pytest.fixture
def on_backend(sim: SimCluster, slack: SlackStandIn, tmp_path: Path,
               database_url: str) -> Iterator[tuple[SlackDriver, Services]]:
    with demo_server(sim, slack, tmp_path, database_url) as both:
        yield both


def _workspace_known(services: Services) -> None:
    """`auth.test` answers in the background at startup; links need what it said."""
    records = services.dispatcher.records
    assert isinstance(records, StoreRecords)
    deadline = time.monotonic() + 20
    while records.workspace_url is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert records.workspace_url == "https://standin.slack.test/"


def test_a_reservation_seen_and_respected_from_slack(
        on_backend: tuple[SlackDriver, Services]) -> None:
    bot, services = on_backend
    assert bot.send_command("alice", "scale shop-api 5 --env prod").status_code == 200
    request = bot.slack.wait_message(lambda m: "awaiting approval" in m.text)
    request_id = str(button(request, "Approve")["value"])

    assert bot.send_command("mallory", "locks").status_code == 200
    listed = bot.finished("locks")
    shown = json.dumps(listed.blocks)
    assert "shop-api in prod" in shown and request_id in shown and "awaiting approval" in shown

    assert bot.send_command("carol", "restart shop-api --env prod").status_code == 200
    refusal = bot.ephemeral("carol", lambda text: "reserved" in text)
    assert request_id in refusal and "scale shop-api 5 --env prod" in refusal

    # Approved, it runs under its own reservation, and the target is free afterwards.
    assert bot.click("bob", request, "Approve").status_code == 200
    bot.finished("scale shop-api 5 --env prod")
    assert services.store.held_locks() == []


def test_executions_link_to_their_messages_and_cancel_refuses_a_finished_one(
        on_backend: tuple[SlackDriver, Services]) -> None:
    bot, services = on_backend
    _workspace_known(services)
    assert bot.send_command("alice", "scale shop-web 3").status_code == 200
    scaled = bot.finished("scale shop-web 3")
    [record] = services.store.recent_executions(1)
    assert bot.send_command("mallory", "executions").status_code == 200
    listed = bot.finished("executions")
    link = f"https://standin.slack.test/archives/{CHANNEL}/p{scaled.ts.replace('.', '')}"
    shown = json.dumps(listed.blocks)
    assert record.id in shown and link in shown and "scale shop-web 3" in shown

    assert bot.send_command("alice", f"cancel {record.id}").status_code == 200
    refusal = bot.ephemeral("alice", lambda text: record.id in text)
    assert "not running" in refusal and "succeeded" in refusal
