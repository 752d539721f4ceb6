"""A deploy from Slack: the plan and each step in one message updated in place, then the
Rollback and Re-run buttons run by whoever clicks them."""

from __future__ import annotations

from simcluster import SimCluster
from tests.support.slack_standin import SlackDriver


def _image(sim: SimCluster) -> str:
    dep = sim.get("/apis/apps/v1/namespaces/shop-staging/deployments/shop-web")
    assert dep is not None
    return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])


def test_deploy_progresses_in_place_and_rollback_button(bot: SlackDriver,
                                                        sim: SimCluster) -> None:
    assert bot.send_command("alice", "deploy shop-web 2.2.0").status_code == 200
    message = bot.finished("deploy shop-web 2.2.0")
    # Neither ALERTMANAGER_URL nor PROMETHEUS_URL is set here: done, but not all checked.
    assert message.text == (
        "❔ `deploy shop-web 2.2.0` in *staging*: done, not checked: Pre-checks, Verify\n"
        "2 not checked: Pre-checks: critical alerts (ALERTMANAGER_URL is not set); "
        "Verify: analysis (PROMETHEUS_URL is not set)")
    assert "❔ Verify: not checked: PROMETHEUS_URL is not set" in str(message.blocks)
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


def test_rerun_button_runs_the_same_deploy_as_the_clicker(bot: SlackDriver,
                                                          sim: SimCluster) -> None:
    assert bot.send_command("alice", "deploy shop-web 2.2.0").status_code == 200
    message = bot.finished("deploy shop-web 2.2.0")
    sim.wait_idle()
    before = sim.snapshot()

    assert bot.click("bob", message, "Re-run").status_code == 200
    # The same deploy, run again by the clicker, as its own message. The image already runs,
    # so its plan is refused as a no-op and nothing changes: a refusal, not a failed run.
    rerun = bot.finished("deploy shop-web 2.2.0 --env staging")
    assert rerun.ts != message.ts
    refusal = ("shop-web already runs registry.example.com/shop/web:2.2.0 in staging; "
               "nothing to deploy")
    assert rerun.text == (
        f"🛑 `deploy shop-web 2.2.0 --env staging` in *staging*: refused\n{refusal}")
    assert f"🛑 Plan: {refusal}" in str(rerun.blocks)
    assert "◻️ Apply" in str(rerun.blocks)  # never started
    # No automatic rollback (not even a skipped one) and no buttons under a no-op.
    assert "Roll back automatically" not in str(rerun.blocks)
    assert "actions" not in str(rerun.blocks)
    assert "by bob" in str(rerun.blocks)
    sim.wait_idle()
    assert sim.snapshot() == before
