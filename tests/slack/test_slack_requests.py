"""What reaches the dispatcher: only signed, fresh, first deliveries; button clicks run as the
clicker. Each "nothing ran" is checked after a later command finished, never after a sleep."""

from __future__ import annotations

import time

from bot.services import Services
from simcluster import SimCluster
from tests.support.signing import signed_headers, slash_command_body
from tests.support.slack_standin import CHANNEL, FINAL, SlackDriver


def executions(services: Services) -> list[tuple[str, str]]:
    return [(r.actor, r.command) for r in services.store.recent_executions(50)]


def barrier(bot: SlackDriver) -> None:
    """Run one command to the end (its own message, not one an earlier barrier left: a
    server may serve several). Work an earlier request started has most likely shown by then,
    not surely: runs overlap, so a later one may finish first. A check that something ran
    waits for that run's own message (`SlackDriver.finished`)."""
    seen = bot.slack.message_ids()
    bot.send_command("alice", "status shop-web")
    bot.slack.wait_message(lambda m: m.ts not in seen and "`status shop-web`" in m.text
                           and bool(FINAL.search(m.text.split("\n")[0])))


def test_bad_signature_is_rejected_and_runs_nothing(bot: SlackDriver,
                                                    services: Services) -> None:
    body = slash_command_body("U0ALICE", "scale shop-api 4")
    response = bot.post(body, signed_headers(body, "not-the-signing-secret"))
    assert response.status_code == 401
    tampered = slash_command_body("U0ALICE", "scale shop-api 4")
    headers = signed_headers(tampered, bot.secret)
    response = bot.post(tampered.replace("U0ALICE", "U0BOB"), headers)
    assert response.status_code == 401
    barrier(bot)
    assert executions(services) == [("U0ALICE", "status shop-web")]


def test_stale_timestamp_is_rejected_and_runs_nothing(bot: SlackDriver,
                                                      services: Services) -> None:
    body = slash_command_body("U0ALICE", "scale shop-api 4")
    six_minutes_ago = int(time.time()) - 6 * 60
    response = bot.post(body, signed_headers(body, bot.secret, timestamp=six_minutes_ago))
    assert response.status_code == 401
    barrier(bot)
    assert executions(services) == [("U0ALICE", "status shop-web")]


def test_a_replayed_request_runs_once(bot: SlackDriver, services: Services,
                                      sim: SimCluster) -> None:
    body = slash_command_body("U0ALICE", "scale shop-api 4")
    headers = signed_headers(body, bot.secret)
    assert bot.post(body, headers).status_code == 200
    assert bot.post(body, headers).status_code == 200  # acked, then ignored as a duplicate
    bot.finished("scale shop-api 4")
    barrier(bot)
    assert executions(services) == [("U0ALICE", "status shop-web"),
                                    ("U0ALICE", "scale shop-api 4")]
    posts = [c for c in bot.slack.calls_to("chat.postMessage") if "scale shop-api 4" in c.text]
    assert len(posts) == 1
    metrics = bot.http.get(f"{bot.url}/metrics").text
    assert 'opsbot_triggers_total{outcome="duplicate",source="slack"}' in metrics


def test_button_runs_the_follow_up_as_the_clicking_user(bot: SlackDriver,
                                                        services: Services) -> None:
    bot.send_command("alice", "status shop-api")
    message = bot.finished("status shop-api")
    assert bot.click("bob", message, "Diagnose").status_code == 200

    follow_up = bot.finished("diag shop-api --env staging")
    assert follow_up.thread_ts == message.ts  # threaded under the clicked message
    assert follow_up.channel == CHANNEL
    context = next(b for b in follow_up.blocks if b["type"] == "context")
    assert context["elements"][0]["text"].startswith("by bob")
    newest = services.store.recent_executions(1)[0]
    assert (newest.actor, newest.command) == ("U0BOB", "diag shop-api --env staging")


def test_a_button_cannot_lend_its_poster_rights(bot: SlackDriver, sim: SimCluster,
                                                services: Services) -> None:
    bot.send_command("alice", "scale shop-api 2")
    message = bot.finished("scale shop-api 2")
    replicas_before = _replicas(sim)
    # mallory clicks a button that alice could use: it runs as mallory, and is denied
    message.blocks.append({"type": "actions", "block_id": "x", "elements": [{
        "type": "button", "action_id": "opsbot_run_9", "value": "scale shop-api 7",
        "text": {"type": "plain_text", "text": "Scale to 7"}}]})
    assert bot.click("mallory", message, "Scale to 7").status_code == 200
    denial = bot.ephemeral("mallory")
    assert "mallory may not run `scale`" in denial
    assert _replicas(sim) == replicas_before == 2
    assert [r.actor for r in services.store.recent_executions(10)] == ["U0ALICE"]


def _replicas(sim: SimCluster) -> int:
    obj = sim.get("/apis/apps/v1/namespaces/shop-staging/deployments/shop-api")
    assert obj is not None
    return int(obj["spec"]["replicas"])
