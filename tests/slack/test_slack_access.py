"""Who may do what, answered privately: denials name the role, typos get suggestions, prod
changes wait for approval, channel restrictions hold, and Slack user groups grant roles."""

from __future__ import annotations

from typing import Any

from bot.services import Services
from simcluster import SimCluster
from tests.support.slack_standin import SlackDriver


def workloads(sim: SimCluster) -> dict[str, Any]:
    """What a command could change: every workload's spec and generation."""
    return {
        key: (obj["metadata"].get("generation"), obj["spec"])
        for key, obj in sim.snapshot().items()
        if key.startswith(("apps/v1/Deployment/", "apps/v1/StatefulSet/"))
    }


def test_denied_user_is_told_which_role_and_nothing_changes(
    bot: SlackDriver, sim: SimCluster, services: Services
) -> None:
    before = workloads(sim)
    assert bot.send_command("mallory", "scale shop-api 5").status_code == 200
    denial = bot.ephemeral("mallory")
    assert denial.startswith("⛔ mallory may not run `scale` in `staging`")
    assert "`deployer`" in denial and "`sre`" in denial
    assert bot.slack.calls_to("chat.postMessage") == []
    assert services.store.recent_executions(5) == []
    assert workloads(sim) == before


def test_unknown_names_get_suggestions(bot: SlackDriver) -> None:
    cases = {
        "stauts shop-api": "`status`",
        "status shop-apj": "`shop-api`",
        "status shop-api --env stagin": "`staging`",
    }
    for text, suggestion in cases.items():
        bot.send_command("alice", text)
        reply = bot.ephemeral("alice", lambda t, s=suggestion: s in t)  # type: ignore[misc]
        assert reply.startswith("❌ unknown"), reply
    assert bot.slack.calls_to("chat.postMessage") == []


def test_prod_change_waits_for_approval_and_the_cluster_unchanged(
    bot: SlackDriver, sim: SimCluster, services: Services
) -> None:
    before = workloads(sim)
    bot.send_command("alice", "scale shop-api 5 --env prod")
    notice = bot.ephemeral("alice")
    assert "`prod` requires approval: request `rq-" in notice
    assert services.store.recent_executions(5) == []
    assert workloads(sim) == before


def test_help_lists_only_what_the_user_may_run(bot: SlackDriver) -> None:
    bot.send_command("mallory", "help")
    mallory = bot.ephemeral("mallory")
    assert "`/ops status &lt;app&gt;`" in mallory and "`/ops diag &lt;app&gt;`" in mallory
    assert "`/ops scale" not in mallory and "`/ops restart" not in mallory
    bot.send_command("alice", "help")
    alice = bot.ephemeral("alice")
    assert "`/ops scale &lt;app&gt; &lt;replicas&gt;`" in alice
    assert "`/ops restart &lt;app&gt;`" in alice


def test_slack_user_groups_grant_roles(bot: SlackDriver, sim: SimCluster) -> None:
    # Slack, not the config's static list, says who is in sre-approvers: bob, not carol.
    bot.slack.usergroups["S0APPROVERS"] = ["U0BOB"]
    bot.send_command("carol", "scale shop-web 3")
    assert "needs the role" in bot.ephemeral("carol")
    bot.send_command("bob", "scale shop-web 3")
    message = bot.finished("scale shop-web 3")
    assert message.text.split("\n")[0].endswith(": done")
    assert "by bob" in str(message.blocks)
    obj = sim.get("/apis/apps/v1/namespaces/shop-staging/deployments/shop-web")
    assert obj is not None and obj["spec"]["replicas"] == 3
    bot.send_command("bob", "scale shop-web 2")
    assert bot.finished("scale shop-web 2").text.split("\n")[0].endswith(": done")
    lookups = bot.slack.calls_to("usergroups.users.list")
    # Three role checks, one question to Slack: members are cached (slack.usergroup_cache_seconds).
    assert [c.params["usergroup"] for c in lookups] == ["S0APPROVERS"]


def test_config_members_stand_in_when_slack_cannot_say(bot: SlackDriver) -> None:
    bot.slack.failing["usergroups.users.list"] = "missing_scope"
    bot.send_command("carol", "restart shop-web")  # carol is a static member of the group
    message = bot.finished("restart shop-web")
    assert message.text.split("\n")[0].endswith(": done")
    # Slack answers again: its answer (carol left the group) counts at once, not after the
    # cache's TTL, because the configured stand-in was never cached.
    del bot.slack.failing["usergroups.users.list"]
    bot.slack.usergroups["S0APPROVERS"] = ["U0BOB"]
    bot.send_command("carol", "restart shop-web")
    assert "needs the role" in bot.ephemeral("carol", lambda t: "needs the role" in t)
    assert len(bot.slack.calls_to("usergroups.users.list")) >= 2

