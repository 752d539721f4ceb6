"""Slash commands end to end: signed request in, ack, execution message posted then updated in
place, long output in the thread, the cluster changed (or not) as the command says."""

from __future__ import annotations

from typing import Any

from bot.services import Services
from simcluster import SimCluster
from tests.slack.test_slack_access import workloads
from tests.support.slack_standin import BOT_TOKEN, CHANNEL, SlackDriver


def deployment(sim: SimCluster, namespace: str, name: str) -> dict[str, Any]:
    obj = sim.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
    assert obj is not None
    return obj


def test_status_message_is_posted_then_updated_in_place(bot: SlackDriver,
                                                       services: Services) -> None:
    response = bot.send_command("alice", "status shop-api")
    assert response.status_code == 200
    assert response.text == ""  # acked empty: the answer is the channel message

    message = bot.finished("status shop-api")
    assert message.channel == CHANNEL
    assert message.text.startswith("✅ `status shop-api` in *staging*: done")
    assert message.versions >= 2  # posted while running, then updated
    assert "running" in message.history[0]
    posts = bot.slack.calls_to("chat.postMessage")
    assert len(posts) == 1  # every later state went to chat.update of the same ts
    updates = bot.slack.calls_to("chat.update")
    assert updates and all(c.params["ts"] == message.ts for c in updates)
    assert all(c.auth == f"Bearer {BOT_TOKEN}" for c in bot.slack.calls)

    fields = [f["text"] for b in message.blocks for f in b.get("fields", [])]
    assert any("registry.example.com/shop/api:1.4.0" in f for f in fields)
    buttons = [e for b in message.blocks if b["type"] == "actions" for e in b["elements"]]
    assert [(e["action_id"], e["text"]["text"], e["value"]) for e in buttons] == [
        ("opsbot_run_0", "Diagnose", "diag shop-api --env staging")
    ]

    record = services.store.recent_executions(1)[0]
    assert (record.actor, record.status, record.channel, record.ts) == (
        "U0ALICE", "succeeded", CHANNEL, message.ts)


def test_diag_long_output_goes_to_the_thread(bot: SlackDriver, services: Services) -> None:
    assert bot.send_command("alice", "diag shop-worker").status_code == 200
    message = bot.finished("diag shop-worker")
    assert "OOMKilled" in message.text
    reply = bot.slack.wait_message(lambda m: m.thread_ts == message.ts)
    assert reply.channel == CHANNEL
    assert reply.text.startswith("*Diagnose* output")
    assert "```" in reply.text
    record = services.store.recent_executions(1)[0]
    output = record.steps[0].output or ""
    last_line = output.strip().splitlines()[-1]
    assert last_line not in message.text  # the output is not in the main message
    assert all(last_line not in str(b) for b in message.blocks)
    thread = "\n".join(m.text for m in bot.slack.replies(message.ts))
    assert last_line.replace("<", "&lt;").replace(">", "&gt;") in thread


def test_scale_changes_the_deployment(bot: SlackDriver, sim: SimCluster) -> None:
    assert bot.send_command("alice", "scale shop-api 5").status_code == 200
    message = bot.finished("scale shop-api 5")
    assert message.text.split("\n")[0].endswith(": done"), message.text
    assert deployment(sim, "shop-staging", "shop-api")["spec"]["replicas"] == 5
    assert deployment(sim, "shop-prod", "shop-api")["spec"]["replicas"] == 3


def test_bad_input_is_answered_privately_and_changes_nothing(
    bot: SlackDriver, sim: SimCluster, services: Services
) -> None:
    before = workloads(sim)
    cases = {
        "scale shop-api 11": "shop-api may run 1 to 10 replicas in staging; 11 is outside",
        "scale shop-api 0": "0 is outside",
        "scale shop-api -3": "cannot be negative",
        "status Shop_API": "`Shop_API` is not a valid app name",
        "restart shop-api;rm": "is not a valid app name",
        "diag shop-api --env ../prod": "unknown environment `../prod`: did you mean `prod`?",
    }
    for text, expected in cases.items():
        bot.slack.reset()
        assert bot.send_command("alice", text).status_code == 200
        reply = bot.ephemeral("alice")
        assert reply.startswith("❌"), (text, reply)
        assert expected in reply, (text, reply)
    assert bot.slack.calls_to("chat.postMessage") == []
    assert services.store.recent_executions(5) == []
    assert workloads(sim) == before


def test_restart_rolls_the_deployment(bot: SlackDriver, sim: SimCluster) -> None:
    before = deployment(sim, "shop-staging", "shop-web")
    assert bot.send_command("alice", "restart shop-web").status_code == 200
    message = bot.finished("restart shop-web")
    assert message.text.split("\n")[0].endswith(": done"), message.text
    after = deployment(sim, "shop-staging", "shop-web")
    annotations = after["spec"]["template"]["metadata"].get("annotations") or {}
    assert "kubectl.kubernetes.io/restartedAt" in annotations
    assert after["metadata"]["generation"] > before["metadata"]["generation"]


def test_ack_comes_back_before_the_work_is_done(bot: SlackDriver, sim: SimCluster) -> None:
    sim.faults.inject(method="GET", path="/deployments/shop-api$", status=None,
                      delay_seconds=2.5)
    response = bot.send_command("alice", "status shop-api")
    assert response.status_code == 200
    finished = [m for m in bot.slack.messages.values()
                if m.text.split("\n")[0].endswith(": done")]
    assert finished == []  # the ack is back while the cluster read still stalls
    bot.finished("status shop-api")
