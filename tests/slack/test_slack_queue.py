"""Acked once on disk: a command is recorded (claimed and queued) before Slack gets its ack,
and a restart finds what was acked and never started: started once if fresh, otherwise the
asker hears that nothing ran; never lost, never run twice."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from bot.services import Services
from bot.slack.queue import encode, resume_unstarted
from bot.slack.tasks import RUNNING_LIMIT
from bot.store import Store
from bot.store.models import DeliveryClaim
from bot.trigger import Trigger
from simcluster import SimCluster
from tests.slack.test_slack_serve import serve_process
from tests.support.alert_chain import wait_until
from tests.support.signing import SIGNING_SECRET
from tests.support.slack_standin import CHANNEL, FINAL, SlackDriver, SlackStandIn

WEB = "/apis/apps/v1/namespaces/shop-staging/deployments/shop-web"


def queued(store: Store) -> list[DeliveryClaim]:
    with store.sessions() as session:
        return list(session.scalars(select(DeliveryClaim)
                                    .where(DeliveryClaim.trigger.is_not(None))))


def test_the_trigger_is_on_disk_when_the_ack_arrives(bot: SlackDriver,
                                                     services: Services) -> None:
    """Only the ack's own record writes a claim's trigger: seen right after the 200, it was
    written before the ack."""
    assert bot.send_command("alice", "scale shop-web 3 --dry-run").status_code == 200
    [claim] = queued(services.store)
    trigger = json.loads(claim.trigger or "")
    assert (trigger["text"], trigger["actor"], trigger["channel"], trigger["via"]) == (
        "scale shop-web 3 --dry-run", "U0ALICE", CHANNEL, "command")
    assert claim.owner == services.store.replica
    bot.finished("scale shop-web 3 --dry-run")
    [claim] = queued(services.store)
    assert claim.started_at is not None


def acked_by_a_dead_process(url: str, text: str, *, ago: timedelta, key: str) -> None:
    # Acked `ago`: the claim's time too, as the store of that process wrote it then.
    store = Store.open(url, replica="pod-gone", clock=lambda: datetime.now(UTC) - ago)
    try:
        trigger = Trigger(source="slack", actor="U0ALICE", text=text, channel=CHANNEL,
                          delivery_id=key, via="command",
                          received_at=datetime.now(UTC) - ago)
        assert store.accept_trigger(key, encode(trigger, None))
    finally:
        store.close()


def test_a_restart_starts_what_was_acked_and_never_started_once(
    sim: SimCluster, slack: SlackStandIn, tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'opsbot.db'}"
    acked_by_a_dead_process(url, "scale shop-web 4", ago=timedelta(seconds=5), key="slack:fresh")
    acked_by_a_dead_process(url, "scale shop-web 5", ago=timedelta(minutes=10), key="slack:old")
    with serve_process(["-m", "bot.cli", "serve"], sim, slack, tmp_path,
                       SLACK_SIGNING_SECRET=SIGNING_SECRET) as served:
        with httpx.Client(timeout=30) as http:
            message = SlackDriver(served.url, http, slack, SIGNING_SECRET).finished(
                "scale shop-web 4")
        assert message.text.split("\n")[0].endswith(": done")

        def told() -> list[str] | None:
            said = [c.params.get("text", "") for c in slack.served("chat.postEphemeral")]
            return said if len(said) >= 2 else None

        said = sorted(wait_until(told))
        served.stop()
    assert said[0].startswith("`scale shop-web 4` (received ")
    assert "is starting now: opsbot restarted after acknowledging it" in said[0]
    assert said[1].startswith("`scale shop-web 5` (received ")
    assert "was not run: opsbot restarted after acknowledging it and before starting" in said[1]
    web = sim.get(WEB)
    assert web is not None and web["spec"]["replicas"] == 4

    store = Store.open(url)
    try:
        assert [r.command for r in store.recent_executions(10)] == ["scale shop-web 4"]
        [record] = [r for r in store.audit_records(limit=50) if r["outcome"] == "not_started"]
        assert (record["actor"], record["command"]) == ("U0ALICE", "scale shop-web 5")
        assert record["details"]["acked_by"] == "pod-gone"
        assert store.unstarted_triggers(timedelta(0)) == []
    finally:
        store.close()

    # Started once means once: another restart finds nothing to start or report.
    slack.reset()
    with serve_process(["-m", "bot.cli", "serve"], sim, slack, tmp_path,
                       SLACK_SIGNING_SECRET=SIGNING_SECRET) as served:
        served.stop()
    assert slack.calls_to("chat.postEphemeral") == []
    store = Store.open(url)
    try:
        assert [r.command for r in store.recent_executions(10)] == ["scale shop-web 4"]
    finally:
        store.close()


async def test_a_busy_store_delays_an_acked_command_it_does_not_drop_it(
    settings: Any, tmp_path: Path,
) -> None:
    """The store cannot record the start (another writer holds SQLite's lock past the store's
    wait): the dispatcher asks again, backing off, and the command runs once the lock is gone,
    not at the next restart."""
    import asyncio
    import sqlite3

    from bot.registry import Registry
    from tests.conftest import RecordingReporter

    path = tmp_path / "busy.db"
    store = Store.open(f"sqlite:///{path}", timeout_s=0.3)
    services = Services.build(settings, registry=Registry.builtin(), store=store)
    try:
        trigger = Trigger(source="slack", actor="U0ALICE", text="scale shop-web 3 --dry-run",
                          channel=CHANNEL, delivery_id="slack:busy", via="command",
                          queued=True)
        assert store.accept_trigger("slack:busy", encode(trigger, None))
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # the write lock, held past several attempts
        reporter = RecordingReporter()
        running = asyncio.create_task(services.dispatcher.dispatch(trigger, reporter))
        await asyncio.sleep(1.5)
        assert not running.done()  # still trying, not given up
        holder.execute("COMMIT")
        holder.close()
        outcome = await asyncio.wait_for(running, 30)
        assert outcome.status == "succeeded"
        assert reporter.final.command == "scale shop-web 3 --dry-run"
        assert store.unstarted_triggers(timedelta(0)) == []
    finally:
        services.close()


def test_a_lone_server_starts_what_it_acked_and_could_not_start(
    sim: SimCluster, slack: SlackStandIn, tmp_path: Path,
) -> None:
    """Alone on SQLite, a trigger that stayed unstarted while the server runs (here: one whose
    starts all failed, written as the store keeps it) is found by the server's own round, not
    only at the next restart."""
    url = f"sqlite:///{tmp_path / 'opsbot.db'}"
    with serve_process(["-m", "bot.cli", "serve"], sim, slack, tmp_path,
                       SLACK_SIGNING_SECRET=SIGNING_SECRET, OPSBOT_HEARTBEAT_SECONDS="1") as served:
        with httpx.Client(timeout=30) as http:
            assert http.get(f"{served.url}/readyz").status_code == 200
            acked_by_a_dead_process(url, "scale shop-web 4", ago=timedelta(seconds=40),
                                    key="slack:stuck")
            message = SlackDriver(served.url, http, slack, SIGNING_SECRET).finished(
                "scale shop-web 4")
        assert message.text.split("\n")[0].endswith(": done")
        served.stop()
    web = sim.get(WEB)
    assert web is not None and web["spec"]["replicas"] == 4


def test_a_burst_of_commands_larger_than_the_running_limit_all_finish_once(
    bot: SlackDriver, services: Services,
) -> None:
    """More commands acked together than may run at once (bot/slack/tasks.py): those past
    the limit wait their turn, and every one is answered, once."""
    count = RUNNING_LIMIT * 3
    commands = [f"scale shop-web {n % 10 + 1} --dry-run" for n in range(count)]
    for command in commands:
        assert bot.send_command("alice", command).status_code == 200

    def answered() -> list[str] | None:
        final = [message.text.split("\n")[0] for message in list(bot.slack.messages.values())
                 if FINAL.search(message.text.split("\n")[0])]
        return final if len(final) >= count else None

    final = wait_until(answered, timeout=120)
    assert len(final) == count
    # Done, or refused for asking for the replicas shop-web already runs: nothing failed.
    assert [h for h in final if not h.endswith((": done", ": refused"))] == []
    assert sorted(r.command for r in services.store.recent_executions(count * 2)) \
        == sorted(commands)
    assert queued(services.store) and all(c.started_at for c in queued(services.store))


async def test_the_round_for_unstarted_triggers_leaves_alone_what_this_process_holds(
    services: Services,
) -> None:
    """A burst longer than the orphan age: the triggers still waiting here for a running slot
    are this process's to start, not orphans to resume or to report as never run."""
    for key, ago in (("slack:held", timedelta(minutes=5)), ("slack:orphan", timedelta(seconds=40))):
        trigger = Trigger(source="slack", actor="U0ALICE", text="scale shop-web 3 --dry-run",
                          channel=CHANNEL, delivery_id=key, via="command",
                          received_at=datetime.now(UTC) - ago)
        assert services.store.accept_trigger(key, encode(trigger, None))
    started: list[str] = []
    handled = await resume_unstarted(
        services, lambda trigger, _ts: started.append(trigger.delivery_id or ""),
        timedelta(0), holding={"slack:held"})
    assert handled == started == ["slack:orphan"]
    # The held one was neither started nor reported (a report marks it started; the start
    # here marks nothing).
    assert sorted(q.key for q in services.store.unstarted_triggers(timedelta(0))) == [
        "slack:held", "slack:orphan"]
