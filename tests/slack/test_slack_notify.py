"""`notify` from Slack: a signed slash command runs a runbook whose step posts to another
channel; the message goes through the outbox to the Slack Web API stand-in, never from the
handler, and a channel the bot cannot post in is told to the asker privately."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from bot.config import Settings, load_settings
from simcluster import SimCluster
from tests.slack.conftest import slack_environ
from tests.support.slack_standin import SlackDriver, SlackStandIn

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"
RUNBOOK = {
    "name": "heads-up",
    "description": "Tell a channel",
    "parameters": {"channel": {"type": "string", "default": "#platform"}},
    "command": {"verb": "heads-up"},
    "steps": [{"name": "Tell", "handler": "notify",
               "with": {"channel": "{{ params.channel }}",
                        "text": "maintenance of {{ env.name }} starts <now> & ends soon"}}],
}


@pytest.fixture
def settings(sim: SimCluster, slack: SlackStandIn, tmp_path: Path) -> Settings:
    runbooks = tmp_path / "runbooks"
    runbooks.mkdir()
    (runbooks / "heads-up.yaml").write_text(yaml.safe_dump(RUNBOOK))
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["runbook_dirs"] = [str(runbooks)]
    raw["roles"]["tester"] = {"users": ["U0ALICE"], "runbooks": ["*"], "environments": ["*"]}
    config = tmp_path / "opsbot.yaml"
    config.write_text(yaml.safe_dump(raw))
    return load_settings(config, environ=slack_environ(sim, slack, tmp_path))


def test_notify_posts_to_the_named_channel(bot: SlackDriver, slack: SlackStandIn) -> None:
    assert bot.send_command("alice", "heads-up").status_code == 200
    done = bot.finished("heads-up")
    assert "message sent to `#platform`" in done.text
    posted = slack.wait_message(lambda m: m.channel == "#platform")
    # The runbook's text is shown as typed (Slack's entities escaped), then where it came from.
    assert posted.text.startswith("maintenance of staging starts &lt;now&gt; &amp; ends soon")
    assert "from heads-up (ex-" in posted.text and "started by alice" in posted.text
    assert posted.thread_ts is None


def test_notify_dry_run_posts_nothing(bot: SlackDriver, slack: SlackStandIn) -> None:
    assert bot.send_command("alice", "heads-up --dry-run").status_code == 200
    done = bot.finished("heads-up --dry-run")
    assert "would post to `#platform`" in json.dumps(done.blocks)
    assert not [m for m in slack.messages.values() if m.channel == "#platform"]


def test_a_channel_the_bot_cannot_post_in_is_told_to_the_asker(
        bot: SlackDriver, slack: SlackStandIn) -> None:
    slack.unpostable["#secret-room"] = "not_in_channel"
    assert bot.send_command("alice", "heads-up --channel #secret-room").status_code == 200
    bot.finished("heads-up --channel #secret-room")
    told = bot.ephemeral("alice", lambda text: "could not be posted there" in text)
    assert "#secret-room" in told
