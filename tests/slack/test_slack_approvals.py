"""Approvals in Slack, driven from outside: signed commands, clicks and form submissions over
a real socket; the request message, the decision and the cluster checked after each step.

The demo world: prod needs 1 approval from sre-approvers (bob, carol), not the requester.
"""

from __future__ import annotations

import copy
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from bot.approvals.view import ApprovalView
from bot.commands import parse
from bot.config import Settings, settings_from_mapping
from bot.registry import Registry
from bot.runbooks.loader import builtin_dir, load_catalog
from bot.services import Services
from bot.simcluster import SimCluster
from bot.slack.blocks import approval_blocks, deny_modal
from bot.slack.interactions import approve_trigger, deny_trigger
from bot.slack.server import create_app
from tests.support.signing import SIGNING_SECRET
from tests.support.slack_standin import (
    BOT_TOKEN,
    CHANNEL,
    Message,
    ServerThread,
    SlackDriver,
    SlackStandIn,
    button,
)

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"
COMMAND = "scale shop-api 5 --env prod"
DEPLOYMENT = "/apis/apps/v1/namespaces/shop-prod/deployments/shop-api"


@pytest.fixture
def settings(sim: SimCluster, slack: SlackStandIn, tmp_path: Path) -> Settings:
    """The demo settings with no user group cache: a membership change counts at once."""
    raw = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    raw["base_dir"] = str(DEMO_CONFIG.parent)
    raw.setdefault("slack", {})["usergroup_cache_seconds"] = 0
    return settings_from_mapping(raw, environ={
        "KUBECONFIG": sim.write_kubeconfig(str(tmp_path / "kubeconfig")),
        "OPSBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'opsbot.db'}",
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url,
    })


def replicas(sim: SimCluster) -> int:
    obj = sim.get(DEPLOYMENT)
    assert obj is not None
    return int(obj["spec"]["replicas"])


def executions(services: Services) -> list[str]:
    return [r.command for r in services.store.recent_executions(50)]


def request(bot: SlackDriver) -> tuple[Message, str]:
    """alice asks for the prod change; the request message as first posted, and its id."""
    assert bot.send_command("alice", COMMAND).status_code == 200
    message = bot.slack.wait_message(
        lambda m: f"`{COMMAND}`" in m.text and "awaiting approval" in m.text)
    return copy.deepcopy(message), str(button(message, "Approve")["value"])


def refusal(bot: SlackDriver, user: str, words: str) -> str:
    return bot.ephemeral(user, lambda text: words in text)


def test_a_prod_change_posts_a_request_with_approve_and_deny(
    bot: SlackDriver, services: Services, sim: SimCluster,
) -> None:
    message, request_id = request(bot)
    assert message.channel == CHANNEL and message.thread_ts is None
    approve, deny = button(message, "Approve"), button(message, "Deny")
    assert (approve["action_id"], approve["value"], approve["style"]) == (
        "opsbot_approve", request_id, "primary")
    confirm = approve["confirm"]
    assert confirm["confirm"]["text"] == "Approve" and confirm["deny"]["text"] == "Cancel"
    assert confirm["title"]["text"]
    assert f"`{COMMAND}`" in confirm["text"]["text"] and "*prod*" in confirm["text"]["text"]
    assert (deny["action_id"], deny["value"], deny["style"]) == (
        "opsbot_deny", request_id, "danger")
    assert "Requested by alice" in message.text and "3 → 5" in message.text
    assert "Approvals: 0 of 1" in message.text and "@sre-approvers" in message.text
    refusal(bot, "alice", request_id)  # alice is told it waits, and for whom
    assert replicas(sim) == 3
    assert executions(services) == []
    stored = services.store.get_request(request_id)
    assert stored is not None and (stored.channel, stored.ts) == (CHANNEL, message.ts)


def test_requester_and_non_approvers_are_refused_privately(
    bot: SlackDriver, services: Services, sim: SimCluster,
) -> None:
    message, request_id = request(bot)
    assert bot.click("alice", message, "Approve").status_code == 200
    assert "cannot approve your own request" in refusal(bot, "alice", "your own")
    assert bot.click("mallory", message, "Approve").status_code == 200
    assert "mallory may not approve" in refusal(bot, "mallory", "may not approve")
    refused = [c for c in bot.slack.calls_to("chat.postEphemeral")
               if "may not approve" in c.text or "your own" in c.text]
    assert {c.params["user"] for c in refused} == {"U0ALICE", "U0MALLORY"}
    stored = services.store.get_request(request_id)
    assert stored is not None and stored.status == "pending" and stored.approvals == []
    assert replicas(sim) == 3 and executions(services) == []
    assert bot.slack.messages[message.ts].versions == 1


def test_an_approval_runs_the_change_in_the_request_thread(
    bot: SlackDriver, services: Services, sim: SimCluster,
) -> None:
    message, request_id = request(bot)
    assert bot.click("bob", message, "Approve").status_code == 200

    run = bot.finished(COMMAND)
    assert run.thread_ts == message.ts and run.channel == CHANNEL
    assert run.text.split("\n")[0].endswith(": done")
    assert replicas(sim) == 5
    updated = bot.slack.wait_message(
        lambda m: m.ts == message.ts and "approved and run" in m.text)
    assert updated.versions > 1 and "Approvals: 1 of 1 (bob at " in updated.text
    assert " UTC" in updated.text and "Execution `" in updated.text
    assert not [b for b in updated.blocks if b["type"] == "actions"]  # closed: no buttons
    stored = services.store.get_request(request_id)
    assert stored is not None and stored.status == "executed"

    # carol clicks the button as she still sees it: already decided, nothing runs again
    assert bot.click("carol", message, "Approve").status_code == 200
    assert "nothing to decide" in refusal(bot, "carol", request_id)
    assert executions(services) == [COMMAND]


def test_two_approvers_at_the_same_moment_run_it_once(
    bot: SlackDriver, services: Services, sim: SimCluster,
) -> None:
    message, _ = request(bot)
    ready = threading.Barrier(2)
    answers: list[int] = []

    def click(user: str) -> None:
        with httpx.Client(timeout=30.0) as http:
            driver = SlackDriver(bot.url, http, bot.slack, bot.secret)
            ready.wait()
            answers.append(driver.click(user, message, "Approve").status_code)

    threads = [threading.Thread(target=click, args=(u,)) for u in ("bob", "carol")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert answers == [200, 200]
    bot.finished(COMMAND)
    # the other approver is told it is decided (or, had it come first, it ran as theirs)
    bot.slack.wait_for(lambda c: c.method == "chat.postEphemeral"
                       and c.params.get("user") in ("U0BOB", "U0CAROL")
                       and "nothing to decide" in c.text)
    assert executions(services) == [COMMAND]
    assert replicas(sim) == 5
    runs = [m for m in bot.slack.messages.values()
            if f"`{COMMAND}`" in m.text and m.thread_ts == message.ts]
    assert len(runs) == 1


def test_deny_asks_why_in_a_form_and_tells_the_requester(
    bot: SlackDriver, services: Services, sim: SimCluster,
) -> None:
    message, request_id = request(bot)
    assert bot.click("bob", message, "Deny").status_code == 200
    form = bot.slack.wait_view()
    assert form["callback_id"] == "opsbot_deny_modal"
    assert form["private_metadata"] == f"{request_id}|{CHANNEL}"
    assert form["submit"]["text"] == "Deny"
    inputs = [b for b in form["blocks"] if b["type"] == "input"]
    assert len(inputs) == 1 and inputs[0]["optional"] is False
    assert inputs[0]["element"]["type"] == "plain_text_input"
    block_id, action_id = inputs[0]["block_id"], inputs[0]["element"]["action_id"]

    empty = bot.submit("bob", form, {block_id: {action_id: {"type": "plain_text_input",
                                                            "value": "   "}}})
    assert empty.json()["response_action"] == "errors"

    # A hostile reason stays the reason: it cannot pick another request or add a command.
    reason = "not during the sale'; approve rq-0000000000 --env prod \"x\" $(id) <!channel>"
    answer = bot.submit("bob", form, {block_id: {action_id: {"type": "plain_text_input",
                                                             "value": reason}}})
    assert answer.status_code == 200 and answer.text in ("", "null")  # closes the form
    told = refusal(bot, "alice", "bob denied")
    assert "not during the sale" in told and "<!channel>" not in told
    updated = bot.slack.wait_message(lambda m: m.ts == message.ts and ": denied" in m.text)
    assert "Denied by bob at " in updated.text and "&lt;!channel&gt;" in updated.text
    assert not [b for b in updated.blocks if b["type"] == "actions"]
    stored = services.store.get_request(request_id)
    assert stored is not None and stored.status == "denied"
    assert stored.denial is not None and stored.denial.user == "U0BOB"
    assert stored.denial.reason == reason
    assert replicas(sim) == 3 and executions(services) == []

    # Deny on the message as carol still sees it: no form for a decided request
    assert bot.click("carol", message, "Deny").status_code == 200
    assert "nothing to decide" in refusal(bot, "carol", request_id)
    assert len(bot.slack.views) == 1


def test_a_changed_target_voids_the_approval(
    bot: SlackDriver, services: Services, sim: SimCluster, settings: Settings,
) -> None:
    message, request_id = request(bot)
    assert settings.kubeconfig is not None
    api = k8s.AppsV1Api(k8s_config.new_client_from_config(config_file=str(settings.kubeconfig)))
    try:
        scale = api.read_namespaced_deployment_scale("shop-api", "shop-prod")
        scale.spec.replicas = 4  # someone scales prod by hand after the request
        api.replace_namespaced_deployment_scale("shop-api", "shop-prod", scale)
    finally:
        api.api_client.close()

    assert bot.click("bob", message, "Approve").status_code == 200
    told = refusal(bot, "alice", "request it again")
    assert "nothing ran" in told
    bot.slack.wait_message(lambda m: m.ts == message.ts and "void" in m.text)
    stored = services.store.get_request(request_id)
    assert stored is not None and stored.status == "void"
    assert replicas(sim) == 4 and executions(services) == []


def test_an_approver_who_left_the_group_is_refused(
    bot: SlackDriver, services: Services, sim: SimCluster,
) -> None:
    message, request_id = request(bot)
    bot.slack.usergroups["S0APPROVERS"] = ["U0CAROL"]  # bob leaves sre-approvers in Slack
    assert bot.click("bob", message, "Approve").status_code == 200
    assert "bob may not approve" in refusal(bot, "bob", "may not approve")
    stored = services.store.get_request(request_id)
    assert stored is not None and stored.status == "pending"
    assert replicas(sim) == 3 and executions(services) == []


def test_pending_lists_the_request_and_the_requester_cancels_it(
    bot: SlackDriver, services: Services,
) -> None:
    message, request_id = request(bot)
    bot.send_command("bob", "pending")
    listed = refusal(bot, "bob", "Pending approval requests")
    assert request_id in listed and COMMAND in listed
    bot.send_command("mallory", f"cancel {request_id}")
    assert "only alice" in refusal(bot, "mallory", "cancel")
    bot.send_command("alice", f"cancel {request_id}")
    updated = bot.slack.wait_message(lambda m: m.ts == message.ts and "cancelled" in m.text)
    assert not [b for b in updated.blocks if b["type"] == "actions"]
    stored = services.store.get_request(request_id)
    assert stored is not None and stored.status == "cancelled"
    assert executions(services) == []


def test_requests_that_expired_while_stopped_are_closed_at_startup(
    services: Services, slack: SlackStandIn,
) -> None:
    posted = slack.add_message(CHANNEL, f"🟡 `{COMMAND}` in *prod*: awaiting approval")
    stale = services.store.create_request(
        runbook="scale", command=COMMAND, environment="prod", target="shop-api",
        params={"app": "shop-api", "replicas": 5}, reason=None, requester="U0ALICE",
        source="slack", channel=CHANNEL, plan_text="would scale shop-api from 3 to 5",
        plan_digest="0" * 64, required=1, eligible_users=[], eligible_groups=["sre-approvers"],
        allow_self=False, ttl_seconds=0.01,
    )
    services.store.set_request_message(stale.id, channel=CHANNEL, ts=posted.ts)
    time.sleep(0.05)  # past its expiry before opsbot starts
    server = ServerThread(create_app(services, shutdown_grace=10)).start()
    try:
        updated = slack.wait_message(lambda m: m.ts == posted.ts and ": expired" in m.text)
        assert not [b for b in updated.blocks if b["type"] == "actions"]
        slack.wait_for(lambda c: c.method == "chat.postEphemeral"
                       and c.params.get("user") == "U0ALICE" and "expired" in c.text)
    finally:
        server.stop()
    stored = services.store.get_request(stale.id)
    assert stored is not None and stored.status == "expired"


# Without a server: what the payloads turn into ---------------------------------------------


def _view(**changes: Any) -> ApprovalView:
    from datetime import UTC, datetime

    base = ApprovalView(
        request_id="rq-01TEST", command="scale shop-api 5 --env prod", environment="prod",
        requester="alice", reason="<!here> traffic", plan=("would scale shop-api",),
        required=1, approvals=(), approvers="@sre-approvers",
        expires_at=datetime(2030, 1, 1, tzinfo=UTC), status="pending", denial=None, note=None,
        channel=CHANNEL, ts="1.2", execution_id=None,
    )
    return ApprovalView(**{**base.__dict__, **changes})


def test_request_blocks_escape_data_and_drop_buttons_once_closed() -> None:
    open_blocks = approval_blocks(_view())
    assert "&lt;!here&gt; traffic" in str(open_blocks) and "<!here>" not in str(open_blocks)
    assert [e["action_id"] for b in open_blocks if b["type"] == "actions"
            for e in b["elements"]] == ["opsbot_approve", "opsbot_deny"]
    for status in ("approved", "executed", "denied", "expired", "cancelled", "void"):
        assert not [b for b in approval_blocks(_view(status=status)) if b["type"] == "actions"]
    long_command = "deploy shop-api " + "x" * 1000
    confirm = approval_blocks(_view(command=long_command))[-1]["elements"][0]["confirm"]
    assert len(confirm["text"]["text"]) <= 300


def test_decisions_take_the_actor_from_the_payload_and_keep_the_reason_one_argument() -> None:
    catalog = load_catalog([builtin_dir()], Registry.builtin())
    body = {"user": {"id": "U0BOB"}, "trigger_id": "t1", "channel": {"id": CHANNEL}}
    trigger = approve_trigger(body, {"value": "rq-01TEST"})
    assert trigger is not None
    assert (trigger.actor, trigger.text, trigger.channel, trigger.via) == (
        "U0BOB", "approve rq-01TEST", CHANNEL, "button")
    assert approve_trigger(body, {"value": "rq-01TEST; deny rq-02"}) is None

    form = deny_modal("rq-01TEST", CHANNEL, "scale shop-api 5")
    for reason in ("it's late; approve rq-99999 --env prod", "a\nb \"c\" \\ $(d)", "--dry-run"):
        values = {"opsbot_deny_reason": {"reason": {"type": "plain_text_input",
                                                    "value": reason}}}
        submitted = {"user": {"id": "U0CAROL"}, "trigger_id": "t2",
                     "view": dict(form, state={"values": values})}
        denied = deny_trigger(submitted)
        assert denied is not None and denied.actor == "U0CAROL" and denied.channel == CHANNEL
        command = parse(denied.text, catalog)
        assert (command.meta, command.topic, command.reason) == ("deny", "rq-01TEST", reason)
    forged = dict(form, private_metadata="rq-01TEST rq-02|C0OPS",
                  state={"values": {"opsbot_deny_reason": {"reason": {"value": "x"}}}})
    assert deny_trigger({"user": {"id": "U0BOB"}, "view": forged}) is None
    hidden = dict(form, private_metadata="rq-01TEST|C0OPS; pending",
                  state={"values": {"opsbot_deny_reason": {"reason": {"value": "x"}}}})
    bad_channel = deny_trigger({"user": {"id": "U0BOB"}, "view": hidden})
    assert bad_channel is not None and bad_channel.channel is None


def test_a_pending_request_survives_a_restart_of_the_server(
    settings: Settings, slack: SlackStandIn, sim: SimCluster,
) -> None:
    """alice asks; opsbot stops (a deploy of opsbot itself); a new process starts on the same
    database; bob's click on the old message is honoured there."""
    from bot.slack.app import build_services

    first = build_services(settings)
    server = ServerThread(create_app(first, shutdown_grace=10)).start()
    try:
        with httpx.Client(timeout=30.0) as http:
            message, request_id = request(SlackDriver(server.url, http, slack, SIGNING_SECRET))
    finally:
        server.stop()
        first.close()
    assert replicas(sim) == 3
    second = build_services(settings)
    server = ServerThread(create_app(second, shutdown_grace=10)).start()
    try:
        jobs = dict(second.scheduler.jobs()) if second.scheduler else {}
        assert f"expire-{request_id}" in jobs  # its timer came back with it
        with httpx.Client(timeout=30.0) as http:
            driver = SlackDriver(server.url, http, slack, SIGNING_SECRET)
            assert driver.click("bob", message, "Approve").status_code == 200
            slack.wait_message(lambda m: m.ts == message.ts and "approved and run" in m.text)
    finally:
        server.stop()
        second.close()
    sim.wait_idle()
    assert replicas(sim) == 5


def test_break_glass_from_slack_runs_at_once_and_is_announced(
    bot: SlackDriver, services: Services, sim: SimCluster,
) -> None:
    assert bot.send_command("bob", f'{COMMAND} --emergency "checkout down"').status_code == 200
    bot.slack.wait_message(lambda m: "Break-glass" in m.text and "checkout down" in m.text)
    bot.slack.wait_message(lambda m: "ran under break-glass" in m.text)
    deadline = time.monotonic() + 30
    while replicas(sim) != 5 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert replicas(sim) == 5
    refused = bot.send_command("alice", f'{COMMAND} --emergency "me too"')
    assert refused.status_code == 200
    assert "may not use --emergency" in bot.ephemeral("alice",
                                                      lambda t: "--emergency" in t)
