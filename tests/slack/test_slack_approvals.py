"""Approvals in Slack, driven from outside: signed commands, clicks and form submissions over
a real socket; the request message, the decision and the cluster checked after each step.

The demo world: prod needs 1 approval from sre-approvers (bob, carol), not the requester.
"""

from __future__ import annotations

import copy
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from bot.approvals.view import ApprovalView
from bot.commands import parse
from bot.config import Settings, settings_from_mapping
from bot.registry import Registry
from bot.runbooks.loader import builtin_dir, load_catalog
from bot.scheduler import JOBS_TABLE, Scheduler
from bot.services import Services
from bot.slack.blocks import approval_blocks, deny_modal
from bot.slack.interactions import approve_trigger, deny_trigger
from bot.slack.server import create_app
from bot.store import Store
from simcluster import SimCluster
from tests.slack.conftest import slack_environ
from tests.support.alert_chain import wait_until
from tests.support.signing import SIGNING_SECRET, block_actions_body, signed_headers
from tests.support.slack_standin import (
    BOT_USER,
    CHANNEL,
    DEFAULT_TIMEOUT,
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
def policy() -> dict[str, Any]:
    """Changes to prod's approval policy; a test parametrizes `policy` to make some."""
    return {}


@pytest.fixture
def settings(sim: SimCluster, slack: SlackStandIn, tmp_path: Path,
             policy: dict[str, Any]) -> Settings:
    """The demo settings with no user group cache: a membership change counts at once."""
    raw = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    raw["base_dir"] = str(DEMO_CONFIG.parent)
    raw.setdefault("slack", {})["usergroup_cache_seconds"] = 0
    raw["environments"]["prod"]["approval"].update(policy)
    return settings_from_mapping(raw, environ=slack_environ(sim, slack, tmp_path))


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
    # Recorded on the request once the sender has Slack's answer.
    stored = wait_until(lambda: (r := services.store.get_request(request_id)) and r.ts and r,
                        timeout=DEFAULT_TIMEOUT)
    assert (stored.channel, stored.ts) == (CHANNEL, message.ts)


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


def short_lived(store: Store, monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Requests made through `store` live `seconds` (a policy's shortest is a minute)."""
    create = store.create_request

    def create_short(**kwargs: Any) -> Any:
        return create(**{**kwargs, "ttl_seconds": seconds})

    monkeypatch.setattr(store, "create_request", create_short)


def stored_job(settings: Settings, job_id: str) -> float | None:
    """The next run time (epoch seconds) of a job as the job store holds it in the database,
    read directly, with no opsbot running."""
    assert settings.database_url is not None
    engine = sa.create_engine(settings.database_url)
    jobs = sa.table(JOBS_TABLE, sa.column("id"), sa.column("next_run_time"))
    try:
        with engine.connect() as conn:
            row = conn.execute(
                sa.select(jobs.c.next_run_time).where(jobs.c.id == job_id)).first()
    finally:
        engine.dispose()
    return None if row is None else float(row.next_run_time)


def timers_made(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Request ids whose expiry timer is made from now on (rather than found in the store)."""
    made: list[str] = []
    original = Scheduler.schedule_expiry

    def spy(self: Scheduler, request_id: str, when: datetime) -> None:
        made.append(request_id)
        original(self, request_id, when)

    monkeypatch.setattr(Scheduler, "schedule_expiry", spy)
    return made


def test_a_pending_request_survives_a_restart_of_the_server(
    settings: Settings, slack: SlackStandIn, sim: SimCluster, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """alice asks; opsbot stops (a deploy of opsbot itself); a new process starts on the same
    database, finds the request's timer in the job store, and honours bob's click on the old
    message."""
    from bot.slack.app import build_services

    first = build_services(settings)
    server = ServerThread(create_app(first, shutdown_grace=10)).start()
    try:
        with httpx.Client(timeout=30.0) as http:
            message, request_id = request(SlackDriver(server.url, http, slack, SIGNING_SECRET))
    finally:
        server.stop()
    asked = first.store.get_request(request_id)
    first.close()
    assert asked is not None and replicas(sim) == 3
    # Between the two processes the timer is a row of opsbot's own database.
    when = stored_job(settings, f"expire-{request_id}")
    assert when == pytest.approx(asked.expires_at.timestamp(), abs=1.0)

    made = timers_made(monkeypatch)
    second = build_services(settings)
    server = ServerThread(create_app(second, shutdown_grace=10)).start()
    try:
        jobs = dict(second.scheduler.jobs()) if second.scheduler else {}
        assert f"expire-{request_id}" in jobs
        assert request_id not in made  # found in the job store, not made again at startup
        with httpx.Client(timeout=30.0) as http:
            driver = SlackDriver(server.url, http, slack, SIGNING_SECRET)
            assert driver.click("bob", message, "Approve").status_code == 200
            slack.wait_message(lambda m: m.ts == message.ts and "approved and run" in m.text)
    finally:
        server.stop()
        second.close()
    sim.wait_idle()
    assert replicas(sim) == 5


def test_an_expiry_timer_stored_before_a_restart_fires_after_it(
    settings: Settings, slack: SlackStandIn, sim: SimCluster, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bot.slack.app import build_services

    first = build_services(settings)
    short_lived(first.store, monkeypatch, 6.0)
    server = ServerThread(create_app(first, shutdown_grace=10)).start()
    try:
        with httpx.Client(timeout=30.0) as http:
            message, request_id = request(SlackDriver(server.url, http, slack, SIGNING_SECRET))
    finally:
        server.stop()
    asked = first.store.get_request(request_id)
    first.close()
    assert asked is not None
    assert stored_job(settings, f"expire-{request_id}") is not None

    made = timers_made(monkeypatch)
    second = build_services(settings)
    server = ServerThread(create_app(second, shutdown_grace=10)).start()
    try:
        # Started before the expiry, so the startup sweep had nothing to expire: what expires
        # it is the stored job, which this process did not make.
        assert datetime.now(UTC) < asked.expires_at, "restarted too slowly to tell"
        assert request_id not in made
        updated = slack.wait_message(lambda m: m.ts == message.ts and ": expired" in m.text,
                                     timeout=30)
        assert datetime.now(UTC) >= asked.expires_at
        assert not [b for b in updated.blocks if b["type"] == "actions"]
        slack.wait_for(lambda c: c.method == "chat.postEphemeral"
                       and c.params.get("user") == "U0ALICE" and "expired" in c.text)
        stored = second.store.get_request(request_id)
        assert stored is not None and stored.status == "expired"
    finally:
        server.stop()
        second.close()
    assert replicas(sim) == 3


def test_a_request_expires_on_time_and_a_later_click_changes_nothing(
    bot: SlackDriver, services: Services, sim: SimCluster, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """APScheduler, running in the server, expires a 2-second request; bob's click on the
    buttons he still sees is refused privately and changes nothing."""
    short_lived(services.store, monkeypatch, 2.0)
    message, request_id = request(bot)
    updated = bot.slack.wait_message(lambda m: m.ts == message.ts and ": expired" in m.text)
    assert not [b for b in updated.blocks if b["type"] == "actions"]
    assert "expired without approval" in refusal(bot, "alice", "expired")
    versions = updated.versions

    assert bot.click("bob", message, "Approve").status_code == 200
    assert "is expired; nothing to decide" in refusal(bot, "bob", request_id)
    stored = services.store.get_request(request_id)
    assert stored is not None and stored.status == "expired" and stored.approvals == []
    assert bot.slack.messages[message.ts].versions == versions
    assert replicas(sim) == 3 and executions(services) == []
    audit = [r["outcome"] for r in services.store.export_audit()
             if r["request_id"] == request_id]
    assert audit == ["requested", "expired"]


@pytest.mark.parametrize("policy", [{"approvals": 2}])
def test_two_approvals_need_two_distinct_approvers(
    bot: SlackDriver, services: Services, sim: SimCluster,
) -> None:
    message, request_id = request(bot)
    assert "Approvals: 0 of 2" in message.text
    assert bot.click("bob", message, "Approve").status_code == 200
    once = bot.slack.wait_message(
        lambda m: m.ts == message.ts and "Approvals: 1 of 2 (bob at " in m.text)
    assert "awaiting approval" in once.text
    assert [b for b in once.blocks if b["type"] == "actions"]  # still open: buttons stay
    assert "(1 of 2)" in refusal(bot, "bob", "approval recorded")

    assert bot.click("bob", message, "Approve").status_code == 200  # the same person again
    assert "already approved" in refusal(bot, "bob", "already approved")
    stored = services.store.get_request(request_id)
    assert stored is not None and stored.status == "pending"
    assert [d.user for d in stored.approvals] == ["U0BOB"]
    assert replicas(sim) == 3 and executions(services) == []

    assert bot.click("carol", message, "Approve").status_code == 200
    ran = bot.finished(COMMAND)
    assert ran.thread_ts == message.ts
    updated = bot.slack.wait_message(
        lambda m: m.ts == message.ts and "approved and run" in m.text)
    assert "Approvals: 2 of 2 (bob at " in updated.text and "carol at " in updated.text
    stored = services.store.get_request(request_id)
    assert stored is not None and [d.user for d in stored.approvals] == ["U0BOB", "U0CAROL"]
    assert executions(services) == [COMMAND]
    sim.wait_idle()
    assert replicas(sim) == 5


@pytest.mark.parametrize("policy", [{"allow_self_approval": True}])
def test_self_approval_where_the_policy_allows_it(
    bot: SlackDriver, services: Services, sim: SimCluster,
) -> None:
    assert bot.send_command("bob", COMMAND).status_code == 200
    message = bot.slack.wait_message(
        lambda m: f"`{COMMAND}`" in m.text and "awaiting approval" in m.text)
    assert "May approve: @sre-approvers · expires " in message.text
    assert "not the requester" not in message.text
    assert "not the requester" not in str(message.blocks)
    assert bot.click("bob", message, "Approve").status_code == 200
    bot.slack.wait_message(lambda m: m.ts == message.ts and "approved and run" in m.text)
    [stored] = services.store.recent_executions(5)
    request_ = services.store.get_request(stored.request_id or "")
    assert request_ is not None and request_.requester == "U0BOB"
    assert [d.user for d in request_.approvals] == ["U0BOB"]
    sim.wait_idle()
    assert replicas(sim) == 5


@pytest.mark.parametrize("policy", [{"users": ["U0MALLORY"], "groups": []}])
def test_approvers_named_by_user_id_in_the_policy(
    bot: SlackDriver, services: Services, sim: SimCluster,
) -> None:
    message, request_id = request(bot)
    assert "May approve: mallory · not the requester" in message.text
    assert bot.click("bob", message, "Approve").status_code == 200  # in the group: not enough
    assert "bob may not approve" in refusal(bot, "bob", "may not approve")
    assert bot.click("mallory", message, "Approve").status_code == 200
    bot.slack.wait_message(lambda m: m.ts == message.ts and "approved and run" in m.text)
    stored = services.store.get_request(request_id)
    assert stored is not None and stored.status == "executed"
    assert [d.user for d in stored.approvals] == ["U0MALLORY"]
    sim.wait_idle()
    assert replicas(sim) == 5


def test_an_ineligible_user_cannot_deny_through_the_form(
    bot: SlackDriver, services: Services, sim: SimCluster,
) -> None:
    message, request_id = request(bot)
    assert bot.click("mallory", message, "Deny").status_code == 200
    form = bot.slack.wait_view()
    [field] = [b for b in form["blocks"] if b["type"] == "input"]
    answer = bot.submit("mallory", form, {field["block_id"]: {field["element"]["action_id"]: {
        "type": "plain_text_input", "value": "I do not like it"}}})
    assert answer.status_code == 200
    assert "mallory may not deny" in refusal(bot, "mallory", "may not deny")
    stored = services.store.get_request(request_id)
    assert stored is not None and stored.status == "pending" and stored.denial is None
    assert bot.slack.messages[message.ts].versions == 1
    assert not [c for c in bot.slack.calls_to("chat.postEphemeral")
                if c.params.get("user") == "U0ALICE" and "denied" in c.text]
    assert replicas(sim) == 3 and executions(services) == []


def test_an_unsigned_or_forged_click_is_rejected_and_changes_nothing(
    bot: SlackDriver, services: Services, sim: SimCluster,
) -> None:
    message, request_id = request(bot)
    raw = {"type": "message", "ts": message.ts, "text": message.text,
           "blocks": message.blocks, "user": BOT_USER}
    body = block_actions_body("U0BOB", button(message, "Approve"), channel_id=message.channel,
                              message=raw)
    unsigned = bot.post(body, {"Content-Type": "application/x-www-form-urlencoded"})
    forged = bot.post(body, signed_headers(body, "not-the-signing-secret"))
    replayed = bot.post(body, signed_headers(body, bot.secret,
                                             timestamp=int(time.time()) - 600))
    assert [r.status_code for r in (unsigned, forged, replayed)] == [401, 401, 401]
    time.sleep(0.5)  # room for anything wrongly started to show
    stored = services.store.get_request(request_id)
    assert stored is not None and stored.status == "pending" and stored.approvals == []
    assert bot.slack.messages[message.ts].versions == 1
    assert not [c for c in bot.slack.calls_to("chat.postEphemeral")
                if c.params.get("user") == "U0BOB"]
    assert replicas(sim) == 3 and executions(services) == []


def test_a_deploy_whose_target_moved_is_voided(
    bot: SlackDriver, services: Services, sim: SimCluster, settings: Settings,
) -> None:
    command = "deploy shop-api 1.5.0 --env prod"
    assert bot.send_command("alice", command).status_code == 200
    message = bot.slack.wait_message(
        lambda m: f"`{command}`" in m.text and "awaiting approval" in m.text)
    assert "api:1.4.0 → registry.example.com/shop/api:1.5.0" in message.text
    request_id = str(button(message, "Approve")["value"])
    assert settings.kubeconfig is not None
    api = k8s.AppsV1Api(k8s_config.new_client_from_config(config_file=str(settings.kubeconfig)))
    try:
        # Someone ships 1.4.1 by hand after the request: the plan approvers saw is stale.
        deployment = api.read_namespaced_deployment("shop-api", "shop-prod")
        deployment.spec.template.spec.containers[0].image = "registry.example.com/shop/api:1.4.1"
        api.replace_namespaced_deployment("shop-api", "shop-prod", deployment)
    finally:
        api.api_client.close()
    sim.wait_idle()

    assert bot.click("bob", message, "Approve").status_code == 200
    assert "nothing ran" in refusal(bot, "alice", "request it again")
    bot.slack.wait_message(lambda m: m.ts == message.ts and "void" in m.text)
    stored = services.store.get_request(request_id)
    assert stored is not None and stored.status == "void"
    assert executions(services) == []
    deployed = sim.get(DEPLOYMENT)
    assert deployed is not None
    assert deployed["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":1.4.1")
    audit = [r["outcome"] for r in services.store.export_audit()
             if r["request_id"] == request_id]
    assert audit == ["requested", "approved", "void"]


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
