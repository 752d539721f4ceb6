"""Slack never holds up a runbook: with the Web API rate limited, hung, failing or refusing
connections, commands run and are recorded in their own time, and their messages follow, in
order and complete, once Slack answers again (also after a kill -9 and a restart).

Bolt checks its token once (`auth.test`) at the first request it sees, so each test sends one
command while Slack is well before making it unwell.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import REGISTRY
from sqlalchemy import select

from bot.config import Settings, load_settings
from bot.reporting import ExecutionView, StepStatus, StepView
from bot.services import Services
from bot.slack.api import slack_client
from bot.slack.app import build_services
from bot.slack.outbox import post, show
from bot.slack.reporter import SlackReporter
from bot.slack.sender import SlackSender
from bot.slack.server import create_app
from bot.store import ExecutionRecord, Store, StoreError, sqlite_url
from bot.store.models import OutboxRow
from bot.store.outbox import execution_key, sender_name
from simcluster import SimCluster
from tests.slack.test_slack_serve import serving
from tests.store.conftest import pg_schemas  # noqa: F401 - the PostgreSQL schemas fixture
from tests.support.alert_chain import wait_until
from tests.support.signing import SIGNING_SECRET
from tests.support.slack_standin import (
    BOT_TOKEN,
    CHANNEL,
    DEFAULT_TIMEOUT,
    FINAL,
    Call,
    Gate,
    Message,
    ServerThread,
    SlackDriver,
    SlackStandIn,
)

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"
SCALE = "scale shop-api 4"


def warm_up(bot: SlackDriver) -> None:
    """One command while Slack is well: Bolt's `auth.test`, and the sender shown working."""
    assert bot.send_command("alice", "status shop-web").status_code == 200
    bot.finished("status shop-web")


def finished_record(store: Store, command: str) -> ExecutionRecord:
    """The execution of `command` once it has ended, with its audit record written."""
    def ended() -> ExecutionRecord | None:
        for record in store.recent_executions(20):
            if record.command == command and record.status != "running":
                audited = [r for r in store.audit_records(limit=50)
                           if r["execution_id"] == record.id and r["outcome"] == record.status]
                return record if audited else None
        return None

    return wait_until(ended, timeout=DEFAULT_TIMEOUT, message=f"{command} did not finish")


def posts_of(slack: SlackStandIn, command: str) -> list[Call]:
    return slack.served("chat.postMessage", lambda c: f"`{command}`" in c.text)


def is_final(text: str) -> bool:
    return bool(FINAL.search(text.split("\n")[0]))


def assert_in_order(message: Message) -> None:
    """Posted once, then updated: the final state last, and only last."""
    assert is_final(message.history[-1]) and message.history[-1] == message.text
    assert not any(is_final(version) for version in message.history[:-1])


def test_a_rate_limited_slack_does_not_hold_up_the_run(bot: SlackDriver,
                                                       services: Services) -> None:
    warm_up(bot)
    bot.slack.fault("ratelimited", retry_after=3)
    assert bot.send_command("alice", SCALE).status_code == 200

    record = finished_record(services.store, SCALE)
    assert record.status == "succeeded"
    assert posts_of(bot.slack, SCALE) == []  # the run ended while Slack still said 429
    # The sender kept to Retry-After: a rate-limited method is not called again within 3 s.
    def limited() -> list[float]:
        return [c.at for c in bot.slack.calls_to("chat.postMessage") if c.fault]

    wait_until(lambda: len(limited()) >= 3, timeout=DEFAULT_TIMEOUT)
    assert all(later - earlier >= 2.9 for earlier, later in itertools.pairwise(limited()))

    bot.slack.heal()
    message = bot.finished(SCALE)
    assert message.text.startswith(f"✅ `{SCALE}` in *staging*: done")
    assert_in_order(message)
    assert len(posts_of(bot.slack, SCALE)) == 1


def test_a_hung_slack_does_not_hold_up_the_run(bot: SlackDriver, services: Services) -> None:
    warm_up(bot)
    bot.slack.fault("hang")
    assert bot.send_command("alice", SCALE).status_code == 200

    record = finished_record(services.store, SCALE)
    assert record.status == "succeeded"
    assert posts_of(bot.slack, SCALE) == []
    assert any(c.fault == "hang" for c in bot.slack.calls_to("chat.postMessage"))

    bot.slack.heal()
    message = bot.finished(SCALE)
    assert message.text.startswith(f"✅ `{SCALE}` in *staging*: done")
    assert_in_order(message)
    assert len(posts_of(bot.slack, SCALE)) == 1


def test_messages_failing_with_5xx_arrive_once_slack_recovers(bot: SlackDriver,
                                                              services: Services) -> None:
    warm_up(bot)
    bot.slack.fault("error", status=500)
    assert bot.send_command("alice", SCALE).status_code == 200

    assert finished_record(services.store, SCALE).status == "succeeded"
    wait_until(lambda: len([c for c in bot.slack.calls if c.fault == "error"]) >= 2,
               timeout=DEFAULT_TIMEOUT)  # tried, failed, tried again
    assert posts_of(bot.slack, SCALE) == []

    bot.slack.heal()
    message = bot.finished(SCALE, timeout=DEFAULT_TIMEOUT + 10)  # the backoff may be at 10 s
    assert_in_order(message)
    metrics = bot.http.get(f"{bot.url}/metrics").text
    assert 'opsbot_outbox_deliveries_total{method="chat.postMessage",outcome="retried"}' \
        in metrics
    assert 'opsbot_outbox_deliveries_total{method="chat.postMessage",outcome="delivered"}' \
        in metrics
    assert "opsbot_outbox_depth" in metrics and "opsbot_outbox_oldest_pending_seconds" in metrics


def test_undelivered_messages_survive_kill_9_and_go_once(
    sim: SimCluster, slack: SlackStandIn, tmp_path: Path
) -> None:
    command = "scale shop-web 3"
    store = Store.open(sqlite_url(tmp_path / "opsbot.db"))
    try:
        with serving(sim, slack, tmp_path) as (served, bot):
            warm_up(bot)
            slack.fault("error", status=503)
            assert bot.send_command("alice", command).status_code == 200
            assert finished_record(store, command).status == "succeeded"
            wait_until(lambda: [c for c in slack.calls_to("chat.postMessage") if c.fault])
            # Between two tries (none in flight), the messages wait in the store: kill -9.
            wait_until(lambda: store.outbox_stats().by_status.get("sending", 0) == 0)
            served.kill_9()
        assert store.outbox_stats().waiting >= 1
        slack.heal()

        with serving(sim, slack, tmp_path) as (served, bot):
            message = bot.finished(command)
            assert_in_order(message)
            wait_until(lambda: store.outbox_stats().waiting == 0)
            assert len(posts_of(slack, command)) == 1  # delivered once
            served.stop()
    finally:
        store.close()


def test_restart_updates_a_message_still_waiting_in_the_outbox(services: Services,
                                                               slack: SlackStandIn) -> None:
    """The process died with Slack down: its running message was never posted. Recovery's
    update joins that message's stream, so one message arrives, saying it was interrupted."""
    store = services.store
    ex_id = store.create_execution(
        runbook="scale", source="slack", actor="U0ALICE", command=SCALE,
        environment="staging", target="shop-api", params={}, dry_run=False, channel=CHANNEL)
    store.start_step(ex_id, index=0, name="Scale", handler="k8s.scale")
    store.enqueue(show(execution_key(ex_id), channel=CHANNEL, text=f"⏳ `{SCALE}`: running",
                       blocks=[]), stream="report:previous-process")

    server = ServerThread(create_app(services)).start()
    try:
        message = slack.wait_message(lambda m: f"`{SCALE}`" in m.text)
        wait_until(lambda: store.outbox_stats().waiting == 0, timeout=DEFAULT_TIMEOUT)
        assert message.text.startswith(f"⚠️ `{SCALE}` in *staging*: interrupted")
        assert len(posts_of(slack, SCALE)) == 1 and slack.calls_to("chat.update") == []
        record = store.get_execution(ex_id)
        assert record is not None and record.ts == message.ts  # recorded on delivery
    finally:
        server.stop()


async def test_updates_held_by_a_rate_limit_coalesce_last_state_wins(
    slack: SlackStandIn, settings: Settings, tmp_path: Path
) -> None:
    store = Store.open(sqlite_url(tmp_path / "outbox.db"))
    sender = SlackSender(slack_client(settings), store)
    await sender.start()
    try:
        reporter = SlackReporter(store, CHANNEL, "U0ALICE")
        view = ExecutionView(execution_id="ex-COALESCE", runbook="scale",
                             command="scale shop-api 9", actor="alice", environment="staging",
                             target="shop-api", dry_run=False,
                             steps=[StepView("Scale", status="running")])
        await reporter.execution(view)
        posted = await asyncio.to_thread(slack.wait_message,
                                         lambda m: "`scale shop-api 9`" in m.text)
        slack.fault("ratelimited", "chat.update", retry_after=1)
        for ready in range(1, 31):
            view.steps[0].progress = f"{ready} of 30 replicas ready"
            await reporter.execution(view)
        view.status = view.steps[0].status = "succeeded"
        view.steps[0].summary = "scaled to 9"
        await reporter.execution(view)
        await asyncio.to_thread(slack.wait_for, lambda c: c.fault == "ratelimited")
        slack.heal()

        final = await asyncio.to_thread(
            slack.wait_message, lambda m: m.ts == posted.ts and is_final(m.text))
        assert "scaled to 9" in final.text and final.history[-1] == final.text
        # 31 states, a handful of calls: the one that met the 429, then the newest state.
        assert len(slack.calls_to("chat.update")) <= 3
        assert len(slack.served("chat.update")) <= 2
    finally:
        await sender.stop()
        store.close()


async def test_a_message_slack_never_takes_is_dropped_after_its_budget(
    slack: SlackStandIn, settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def dropped() -> float:
        return REGISTRY.get_sample_value("opsbot_outbox_deliveries_total", {
            "method": "chat.postMessage", "outcome": "dropped"}) or 0.0

    before = dropped()
    store = Store.open(sqlite_url(tmp_path / "outbox.db"))
    sender = SlackSender(slack_client(settings), store, budget_seconds=1.5)
    slack.fault("error", "chat.postMessage", status=502)
    await sender.start()
    try:
        store.enqueue(post(channel=CHANNEL, text="lost in the outage"), stream="s")
        store.enqueue(post(channel=CHANNEL, text="after it"), stream="s")
        await asyncio.to_thread(wait_until, lambda: store.outbox_stats().waiting == 0,
                                timeout=DEFAULT_TIMEOUT)
    finally:
        await sender.stop()
    assert store.outbox_stats().by_status == {"dropped": 2}
    store.close()
    assert dropped() == before + 2
    assert "dropped: not delivered within 2 s" in caplog.text  # budget 1.5 s, rounded
    assert slack.served("chat.postMessage") == []


async def test_a_retry_goes_when_it_falls_due_not_at_the_next_poll(
    slack: SlackStandIn, settings: Settings, tmp_path: Path
) -> None:
    # The sender keeps the times of the rows it put off: a retry goes about a second after a
    # 5xx, though the timer's poll is a minute away; and once the outbox is empty the depth
    # gauge says so within seconds, not at that poll.
    def depth() -> float:
        return REGISTRY.get_sample_value("opsbot_outbox_depth") or 0.0

    store = Store.open(sqlite_url(tmp_path / "outbox.db"))
    sender = SlackSender(slack_client(settings), store, poll_seconds=60.0)
    slack.fault("error", "chat.postMessage", status=503, seconds=0.3)
    await sender.start()
    try:
        store.enqueue(post(channel=CHANNEL, text="after one failure"), stream="retried")
        # Its wait (20 s) ends long before the poll would come.
        await asyncio.to_thread(slack.wait_message, lambda m: m.text == "after one failure")
        assert [c.fault for c in slack.calls_to("chat.postMessage")][:2] == ["error", None]
        await asyncio.to_thread(wait_until, lambda: depth() == 0 and store.outbox_stats()
                                .by_status == {"delivered": 1}, timeout=DEFAULT_TIMEOUT)
    finally:
        await sender.stop()
        store.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def shared_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database two processes share: a SQLite file, or a PostgreSQL schema."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "shared.db")
    return str(request.getfixturevalue("pg_schemas").new_url())


async def test_two_senders_on_one_database_never_send_a_row_twice(
    shared_database: str, slack: SlackStandIn, settings: Settings
) -> None:
    stores = [Store.open(shared_database) for _ in range(2)]
    streams = {f"s{n}": [f"row {n}.{i}" for i in range(5)] for n in range(6)}
    for stream, texts in streams.items():
        for text in texts:
            stores[0].enqueue(post(channel=CHANNEL, text=text), stream=stream)
    senders = [SlackSender(slack_client(settings), store, batch=4) for store in stores]
    try:
        await asyncio.gather(*(sender.start() for sender in senders))
        await asyncio.to_thread(
            wait_until, lambda: stores[1].outbox_stats().waiting == 0, timeout=DEFAULT_TIMEOUT)
    finally:
        await asyncio.gather(*(sender.stop() for sender in senders))
        for store in stores:
            store.close()
    sent = [c.text for c in slack.served("chat.postMessage")]
    assert sorted(sent) == sorted(t for texts in streams.values() for t in texts)  # once each
    for texts in streams.values():
        assert [t for t in sent if t in texts] == texts  # and each stream in order


@pytest.fixture
def stuck_deploy_settings(sim: SimCluster, slack: SlackStandIn,
                          tmp_path: Path) -> Iterator[tuple[Settings, Gate]]:
    """The demo, with a 3-second rollout timeout, talking to Slack through a gate that can
    refuse connections."""
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    for app in raw["apps"].values():
        app["deploy"] = {"timeout_seconds": 3}
    config = tmp_path / "opsbot.yaml"
    config.write_text(yaml.safe_dump(raw))
    gate = slack.gate()
    settings = load_settings(config, environ={
        "KUBECONFIG": sim.write_kubeconfig(str(tmp_path / "kubeconfig")),
        "OPSBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'opsbot.db'}",
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": gate.api_url,
    })
    yield settings, gate
    gate.stop()


def test_an_automatic_rollback_completes_with_slack_down(
    sim: SimCluster, slack: SlackStandIn, stuck_deploy_settings: tuple[Settings, Gate]
) -> None:
    settings, gate = stuck_deploy_settings
    command = "deploy shop-web 2.9.0"
    sim.script_image_pull_error("web:2.9.0")
    services = build_services(settings)
    server = ServerThread(create_app(services, shutdown_grace=10)).start()
    try:
        with httpx.Client(timeout=30) as http:
            bot = SlackDriver(server.url, http, slack, SIGNING_SECRET)
            warm_up(bot)
            gate.refuse()
            assert bot.send_command("alice", command).status_code == 200

            record = finished_record(services.store, command)
            assert record.status == "failed"
            revert = record.steps[-1]
            assert (revert.name, revert.status) == ("Roll back automatically", "succeeded")
            assert posts_of(slack, command) == []  # Slack was unreachable all along
            time.sleep(2)  # and stays so a while after the run: an outage longer than it

            gate.accept()
            message = bot.finished(command, timeout=DEFAULT_TIMEOUT + 10)
            assert message.text.startswith(f"❌ `{command}` in *staging*: failed")
            assert "rolled back automatically" in message.text
            assert_in_order(message)
    finally:
        server.stop()
        services.close()


async def test_recovery_releases_at_once_what_dead_senders_were_sending(
    services: Services,
) -> None:
    """Rows claimed by senders whose process is gone wait again at once (their streams would
    wait for the 60 s lease): a dead replica's, and this replica's name's from before this
    start; a live replica's and this process's own stay theirs. Alone on the database, every
    other sender is gone."""
    store = services.store
    live = Store.open(str(store.engine.url.render_as_string(hide_password=False)),
                      replica="pod-live")
    try:
        live.beat()
        owners = {"dead": sender_name("pod-dead"), "live": sender_name("pod-live"),
                  "earlier": sender_name(store.replica), "mine": services.outbox_owner}
        for who, owner in owners.items():
            store.enqueue(post(channel=CHANNEL, text=who), stream=f"report:{who}")
            [claimed] = store.claim_outgoing(owner, limit=1, lease_seconds=60)
            assert claimed.payload["text"] == who

        def sending() -> set[str]:
            with store.sessions() as session:
                return {row.payload["text"] for row in session.scalars(
                    select(OutboxRow).where(OutboxRow.status == "sending"))}

        assert await services.release_outbox(timedelta(seconds=30)) == 2
        assert sending() == {"live", "mine"}
        assert await services.release_outbox(None) == 1  # alone: only this process sends
        assert sending() == {"mine"}
        again = store.claim_outgoing(sender_name(store.replica), limit=4, lease_seconds=60)
        assert sorted((row.payload["text"], row.attempts) for row in again) == [
            ("dead", 2), ("earlier", 2), ("live", 2)]  # due now, for their second try
    finally:
        live.close()


def test_a_kill_9_mid_call_holds_its_stream_no_longer_than_the_restart(
    sim: SimCluster, slack: SlackStandIn, tmp_path: Path
) -> None:
    """Killed while Slack had a message's call in hand (no answer yet): the row was claimed,
    leased for 60 s. The restarted process releases it at once and delivers it, once."""
    command = "scale shop-web 3"
    store = Store.open(sqlite_url(tmp_path / "opsbot.db"))
    try:
        with serving(sim, slack, tmp_path) as (served, bot):
            warm_up(bot)
            slack.fault("hang", "chat.postMessage")
            assert bot.send_command("alice", command).status_code == 200
            def in_hand() -> tuple[int, Any, str] | None:
                with store.sessions() as session:
                    row = session.scalars(
                        select(OutboxRow).where(OutboxRow.status == "sending")).first()
                    return None if row is None else (row.id, row.lease_until, row.stream)

            # Killed the moment the call is in Slack's hands (it hangs there for longer than
            # the client waits, so the row is still claimed, leased for a minute).
            row_id, lease_until, held_stream = wait_until(in_hand, interval=0.01)
            served.kill_9()
        slack.heal()

        with serving(sim, slack, tmp_path) as (served, bot):
            bot.finished(command)
            wait_until(lambda: store.outbox_stats().waiting == 0)
            with store.sessions() as session:
                stream = session.scalars(
                    select(OutboxRow).where(OutboxRow.id >= row_id).order_by(OutboxRow.id)
                    .where(OutboxRow.stream == held_stream)).all()
            # The held row went, or gave way to a newer state of its message, and the stream
            # was delivered by the restart before the dead process's lease would have ended.
            assert stream[0].status in ("delivered", "coalesced")
            assert stream[-1].status == "delivered"
            assert max(row.finished_at for row in stream) < lease_until
            assert len(posts_of(slack, command)) == 1
            served.stop()
    finally:
        store.close()


@contextmanager
def _reporting_into_a_database_that_stops(
    tmp_path: Path, settings: Settings, *, timeout_s: float,
    final_retry: tuple[float, float, float],
) -> Iterator[tuple[Store, sqlite3.Connection, SlackReporter]]:
    """A reporter for U0ALICE on a SQLite store that stops answering while `holder` (another
    writer) holds the lock past the store's wait (`holder.execute("BEGIN IMMEDIATE")`)."""
    path = tmp_path / "outbox.db"
    store = Store.open(sqlite_url(path), timeout_s=timeout_s)
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        yield store, holder, SlackReporter(store, CHANNEL, "U0ALICE",
                                           direct=slack_client(settings),
                                           final_retry=final_retry)
    finally:
        holder.close()
        store.close()


def _scale_run(execution_id: str, replicas: int, summary: str | None = None) -> ExecutionView:
    """`scale shop-api <replicas>` by alice: running, or succeeded with `summary`."""
    status: StepStatus = "running" if summary is None else "succeeded"
    return ExecutionView(execution_id=execution_id, runbook="scale",
                         command=f"scale shop-api {replicas}", actor="alice",
                         environment="staging", target="shop-api", dry_run=False,
                         status=status, steps=[StepView("Scale", status=status,
                                                        summary=summary or "")])


async def test_a_final_result_the_outbox_cannot_take_reaches_the_asker_directly(
    slack: SlackStandIn, settings: Settings, tmp_path: Path
) -> None:
    """The database stops answering mid-run (another writer holds SQLite's lock past the
    store's wait): progress the outbox cannot take is skipped, but the final result goes to the
    asker privately, straight through Slack's API, rather than nowhere. Once the database
    answers again, the channel's message is updated to the final state, and the output follows
    in its thread."""
    with _reporting_into_a_database_that_stops(
            tmp_path, settings, timeout_s=0.2, final_retry=(0.1, 0.2, 30.0),
    ) as (store, holder, reporter):
        sender = SlackSender(slack_client(settings), store)
        try:
            view = _scale_run("ex-LOCKED", 5)
            holder.execute("BEGIN IMMEDIATE")
            with pytest.raises(StoreError):
                await reporter.execution(view)  # progress: nothing is sent instead
            assert slack.calls_to("chat.postEphemeral") == []
            view.status = view.steps[0].status = "succeeded"
            view.steps[0].summary = "scaled to 5"
            view.steps[0].output = "deployment.apps/shop-api scaled"
            with pytest.raises(StoreError):
                await reporter.execution(view)
            [told] = slack.calls_to("chat.postEphemeral")
            assert told.params["user"] == "U0ALICE" and told.params["channel"] == CHANNEL
            assert "database did not answer" in told.text
            assert "`scale shop-api 5`" in told.text and "scaled to 5" in told.text
            await asyncio.sleep(0.5)  # offered again meanwhile, in vain
            holder.execute("COMMIT")  # the database answers again
            await sender.start()
            final = await asyncio.to_thread(slack.wait_message,
                                            lambda m: "scaled to 5" in m.text)
            assert final.channel == CHANNEL and "`scale shop-api 5`" in final.text
            reply = await asyncio.to_thread(
                slack.wait_message, lambda m: "deployment.apps/shop-api scaled" in m.text)
            assert reply.thread_ts == final.ts
            assert len(slack.calls_to("chat.postMessage")) == 2  # the message, then its output
        finally:
            await sender.stop()


async def test_a_final_message_offered_again_never_replaces_a_later_state(
    slack: SlackStandIn, settings: Settings, tmp_path: Path
) -> None:
    """The database answers again before the offer comes, and the run's message is recorded in
    a later state meanwhile: the offer gives way, and the channel keeps the later state."""
    with _reporting_into_a_database_that_stops(
            tmp_path, settings, timeout_s=0.2, final_retry=(0.5, 0.5, 30.0),
    ) as (store, holder, reporter):
        sender = SlackSender(slack_client(settings), store)
        try:
            view = _scale_run("ex-LATER", 3, "scaled to 3")
            holder.execute("BEGIN IMMEDIATE")
            with pytest.raises(StoreError):
                await reporter.execution(view)
            holder.execute("COMMIT")
            later = replace(view, steps=[replace(view.steps[0], summary="scaled to 3, checked")])
            await reporter.execution(later)  # recorded before the offer comes
            await sender.start()
            shown = await asyncio.to_thread(slack.wait_message, lambda m: "checked" in m.text)
            await asyncio.sleep(1.0)  # the offer's time has come and gone
            assert "checked" in shown.text
            assert all("checked" in version for version in shown.history)  # never the older
        finally:
            await sender.stop()


async def test_a_final_result_is_offered_again_for_a_while_then_given_up(
    slack: SlackStandIn, settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A database that never answers again: the final message is offered for `final_retry`'s
    last figure, then given up with an error in the log (the asker had it privately)."""
    with _reporting_into_a_database_that_stops(
            tmp_path, settings, timeout_s=0.1, final_retry=(0.05, 0.1, 0.5),
    ) as (_store, holder, reporter):
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError):
            await reporter.execution(_scale_run("ex-GONE", 2, "scaled"))
        deadline = time.monotonic() + 10
        while "was never recorded" not in caplog.text:
            assert time.monotonic() < deadline, "the offer never ended"
            await asyncio.sleep(0.05)
        assert "ex-GONE" in caplog.text
