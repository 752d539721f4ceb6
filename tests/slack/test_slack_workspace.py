"""Settings a workspace chooses: environments bound to channels, and the slash command's name.

Staging takes commands only in #ops (C0OPS), prod only in #prod (C0PROD), and the command is
`/opsbot`; everything goes through signed requests to the real server.
"""

from __future__ import annotations

import json

import pytest

from bot.config import Settings
from bot.services import Services
from simcluster import SimCluster
from tests.slack.test_slack_access import workloads
from tests.support.block_kit import text_objects
from tests.support.signing import signed_headers, slash_command_body
from tests.support.slack_standin import SlackDriver

PROD_CHANNEL = "C0PROD"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    channels = {"staging": ["C0OPS"], "prod": [PROD_CHANNEL]}
    environments = {
        name: env.model_copy(update={"channels": channels[name]})
        for name, env in settings.environments.items()
    }
    slack = settings.slack.model_copy(update={"command": "/opsbot"})
    return settings.model_copy(update={"environments": environments, "slack": slack})


def command(bot: SlackDriver, user_id: str, text: str, channel: str, name: str = "/opsbot") -> int:
    body = slash_command_body(user_id, text, channel_id=channel, command=name)
    return bot.post(body, signed_headers(body, bot.secret)).status_code


def test_a_command_outside_its_environments_channel_is_refused(
    bot: SlackDriver, sim: SimCluster, services: Services
) -> None:
    before = workloads(sim)
    assert command(bot, "U0ALICE", "scale shop-web 3", PROD_CHANNEL) == 200
    denial = bot.ephemeral("alice")
    assert "commands for `staging` are only accepted in <#C0OPS>" in denial
    assert "Run it from one of those channels" in denial
    assert "role" not in denial  # a channel restriction is not a missing role
    assert bot.slack.calls_to("chat.postMessage") == []
    assert services.store.recent_executions(5) == []
    assert workloads(sim) == before
    audit = services.store.export_audit()
    assert [(r["outcome"], r["environment"]) for r in audit] == [("denied", "staging")]


def test_the_channels_own_environment_runs(bot: SlackDriver) -> None:
    assert command(bot, "U0ALICE", "status shop-api --env prod", PROD_CHANNEL) == 200
    message = bot.finished("status shop-api --env prod")
    assert message.channel == PROD_CHANNEL
    assert message.text.split("\n")[0].endswith(": done")


def help_shown(bot: SlackDriver) -> str:
    """The help as Slack shows it: its blocks (the top-level text is only the notification's
    fallback, cut to Slack's length for it)."""
    call = bot.slack.wait_for(lambda c: c.method == "chat.postEphemeral"
                              and c.params.get("user") == "U0ALICE")
    blocks = call.params["blocks"]
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    return "\n".join(t["text"] for t in text_objects(blocks))


def test_help_in_a_channel_without_the_default_names_the_env_flag(bot: SlackDriver) -> None:
    command(bot, "U0ALICE", "help", PROD_CHANNEL)
    prod_help = help_shown(bot)
    assert "add `--env prod`" in prod_help
    assert "`/opsbot status &lt;app&gt;`" in prod_help
    assert "…" not in prod_help  # every command alice may run is listed
    bot.slack.reset()
    command(bot, "U0ALICE", "help", "C0OPS")
    ops_help = help_shown(bot)
    assert "`/opsbot status &lt;app&gt;`" in ops_help and "--env prod`:" not in ops_help
    bot.slack.reset()
    command(bot, "U0ALICE", "help", "C0ELSEWHERE")
    assert "You may not run any command here" in bot.ephemeral("alice")


def test_only_the_configured_command_name_is_answered(
    bot: SlackDriver, services: Services
) -> None:
    assert command(bot, "U0ALICE", "status shop-api", "C0OPS", name="/ops") == 404
    assert services.store.recent_executions(5) == []
    assert command(bot, "U0ALICE", "status shop-api", "C0OPS") == 200
    assert bot.finished("status shop-api").text.split("\n")[0].endswith(": done")
