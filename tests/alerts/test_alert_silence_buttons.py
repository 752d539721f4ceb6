"""The alert message's Silence buttons through the real server (signed block_actions, the Slack
stand-in) and the real Alertmanager: once silenced, the message says who silenced it until
when and offers Expire instead; Expire ends the silence in Alertmanager, audited, and the
message says who expired it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.services import Services
from bot.slack.app import build_services
from simcluster import SimCluster
from tests.alerts.test_alert_intake import ALERTS, crashloop, post, slack_settings
from tests.handlers import test_silence
from tests.handlers.test_silence import listed
from tests.slack import conftest as slack_fixtures
from tests.support.alert_payloads import notification, to_bytes
from tests.support.prometheus import AlertmanagerServer
from tests.support.slack_standin import Message, ServerThread, SlackDriver, SlackStandIn

pytest_plugins = ["tests.support.fixtures_prometheus"]


# The silence tests' Alertmanager with no silence in force, and the Slack tests' real server and
# signed-request driver over this module's services.
am = test_silence.am
server = slack_fixtures.server
bot = slack_fixtures.bot


@pytest.fixture
def services(alert_sim: SimCluster, tmp_path: Path, slack: SlackStandIn,
             am: AlertmanagerServer) -> Iterator[Services]:
    settings = slack_settings(alert_sim, tmp_path, slack)
    built = build_services(settings.model_copy(update={"alertmanager_url": am.url}))
    yield built
    built.close()


def labels(message: Message) -> list[str]:
    return [element["text"]["text"] for block in message.blocks
            for element in block.get("elements", []) if element.get("type") == "button"]


def test_silence_shows_on_the_alert_message_and_expire_ends_it(
        bot: SlackDriver, server: ServerThread, slack: SlackStandIn, services: Services,
        am: AlertmanagerServer) -> None:
    assert post(bot.http, server, to_bytes(notification([crashloop()]))).status_code == 200
    message = slack.wait_message(
        lambda m: m.channel == ALERTS and "Silence 1h" in json.dumps(m.blocks))

    assert bot.click("alice", message, "Silence 1h").status_code == 200
    silenced = slack.wait_message(
        lambda m: m.ts == message.ts and "Expire silence" in json.dumps(m.blocks))
    [silence] = listed(am)
    assert {m["name"]: m["value"] for m in silence["matchers"]}["alertname"] == "TestCrashLoop"
    shown = json.dumps(silenced.blocks)
    assert "silenced by alice until" in shown
    assert "Silence 1h" not in labels(silenced)  # the silence is made: Expire instead
    expire = next(e for block in silenced.blocks for e in block.get("elements", [])
                  if e.get("type") == "button" and e["text"]["text"] == "Expire silence")
    assert expire["value"] == f"unsilence {silence['id']} --env staging"

    # A viewer may not expire it; the silence stays.
    assert bot.click("mallory", silenced, "Expire silence").status_code == 200
    assert "may not run `unsilence`" in bot.ephemeral("mallory")
    assert [s["id"] for s in listed(am)] == [silence["id"]]

    assert bot.click("bob", silenced, "Expire silence").status_code == 200
    bot.finished(f"unsilence {silence['id']} --env staging")
    assert listed(am) == []
    expired = slack.wait_message(
        lambda m: m.ts == message.ts and "silence expired by bob" in json.dumps(m.blocks))
    assert "Silence 1h" in labels(expired) and "Expire silence" not in labels(expired)
    audit = [(r["actor"], r["outcome"]) for r in services.store.export_audit()
             if r["command"].startswith("unsilence")]
    assert ("U0BOB", "succeeded") in audit

