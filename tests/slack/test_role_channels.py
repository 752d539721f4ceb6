"""A role limited to channels: alice is a deployer only in #deploys (C0DEPLOYS); elsewhere she
keeps what her other roles grant (viewer), and the refusal says where the role holds.
Everything goes through signed requests to the real server."""

from __future__ import annotations

import pytest

from bot.config import Settings
from bot.services import Services
from simcluster import SimCluster
from tests.slack.test_slack_access import workloads
from tests.support.signing import signed_headers, slash_command_body
from tests.support.slack_standin import SlackDriver

DEPLOYS = "C0DEPLOYS"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    roles = dict(settings.roles)
    roles["deployer"] = roles["deployer"].model_copy(update={"channels": [DEPLOYS]})
    return settings.model_copy(update={"roles": roles})


def command(bot: SlackDriver, user_id: str, text: str, channel: str) -> int:
    body = slash_command_body(user_id, text, channel_id=channel)
    return bot.post(body, signed_headers(body, bot.secret)).status_code


def test_a_role_outside_its_channels_does_not_hold(
    bot: SlackDriver, sim: SimCluster, services: Services
) -> None:
    before = workloads(sim)
    assert command(bot, "U0ALICE", "scale shop-web 3", "C0RANDOM") == 200
    denial = bot.ephemeral("alice")
    assert "alice may run `scale` in `staging` only from the channels of their role" in denial
    assert "`deployer` in <#C0DEPLOYS>" in denial
    assert workloads(sim) == before
    assert services.store.recent_executions(5) == []
    audit = services.store.export_audit()
    assert [(r["outcome"], r["command"]) for r in audit] == [("denied", "scale shop-web 3")]


def test_the_role_holds_in_its_channel(bot: SlackDriver, sim: SimCluster) -> None:
    assert command(bot, "U0ALICE", "scale shop-web 3", DEPLOYS) == 200
    message = bot.finished("scale shop-web 3")
    assert message.channel == DEPLOYS
    assert message.text.split("\n")[0].endswith(": done")
    web = sim.get("/apis/apps/v1/namespaces/shop-staging/deployments/shop-web")
    assert web is not None and web["spec"]["replicas"] == 3


def test_other_roles_still_hold_everywhere(bot: SlackDriver) -> None:
    # status is also granted by viewer, which has no channel limit
    assert command(bot, "U0ALICE", "status shop-api", "C0RANDOM") == 200
    assert bot.finished("status shop-api").text.split("\n")[0].endswith(": done")
