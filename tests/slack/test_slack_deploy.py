"""A deploy from Slack: the plan and each step in one message updated in place, then the
Rollback button run by whoever clicks it."""

from __future__ import annotations

from bot.simcluster import SimCluster
from tests.support.slack_standin import SlackDriver


def _image(sim: SimCluster) -> str:
    dep = sim.get("/apis/apps/v1/namespaces/shop-staging/deployments/shop-web")
    assert dep is not None
    return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])


def test_deploy_progresses_in_place_and_rollback_button(bot: SlackDriver,
                                                        sim: SimCluster) -> None:
    assert bot.send_command("alice", "deploy shop-web 2.2.0").status_code == 200
    message = bot.finished("deploy shop-web 2.2.0")
    assert message.text.startswith("✅ `deploy shop-web 2.2.0` in *staging*: done")
    assert message.versions >= 5  # posted, then updated as plan, checks, apply, rollout finished
    # One of the in-place versions showed the change applied and the rollout still going.
    assert any("set web of shop-web" in v and "rolled out" not in v for v in message.history)
    fields = " ".join(f["text"] for b in message.blocks for f in b.get("fields", []))
    assert "web:2.1.0 → registry.example.com/shop/web:2.2.0" in fields
    assert _image(sim).endswith(":2.2.0")

    assert bot.click("bob", message, "Rollback").status_code == 200
    rollback = bot.finished("rollback shop-web --env staging")
    assert "by bob" in str(rollback.blocks)
    sim.wait_idle()
    assert _image(sim).endswith(":2.1.0")
