"""kill -9 of a real `opsbot serve` at the two moments it can die holding a user's work: after
a command's ack and before its work starts, and in the middle of a step. Either way the
command is not lost and does not run twice, and a request waiting for approval still waits,
and can still be approved, after the restart."""

from __future__ import annotations

import copy
import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from bot.store import Store, sqlite_url
from simcluster import SimCluster
from tests.slack.test_slack_serve import serving
from tests.support.alert_chain import wait_until
from tests.support.slack_standin import SlackStandIn, button

STAGING_WEB = "/apis/apps/v1/namespaces/shop-staging/deployments/shop-web"
PROD_API = "/apis/apps/v1/namespaces/shop-prod/deployments/shop-api"


def replicas(sim: SimCluster, path: str) -> int:
    obj = sim.get(path)
    assert obj is not None
    return int(obj["spec"]["replicas"])


@contextmanager
def request_in_flight(url: str) -> Iterator[None]:
    """A request whose body has not all arrived: while it is in flight, the work of an acked
    command waits (up to two seconds, bot/pacing.py), so a kill right after the ack lands
    before that work starts."""
    where = urlsplit(url)
    with socket.create_connection((where.hostname, where.port)) as held:
        held.sendall(b"POST /slack/events HTTP/1.1\r\nHost: opsbot\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n"
                     b"Content-Length: 100\r\n\r\ntoken=")
        yield


def test_a_kill_9_after_the_ack_runs_the_command_once_after_the_restart(
    sim: SimCluster, slack: SlackStandIn, tmp_path: Path,
) -> None:
    command = "scale shop-web 4"
    before = replicas(sim, STAGING_WEB)
    store = Store.open(sqlite_url(tmp_path / "opsbot.db"))
    try:
        with serving(sim, slack, tmp_path) as (served, bot), request_in_flight(served.url):
            assert bot.send_command("alice", command).status_code == 200
            served.kill_9()
        # Acked and on disk; nothing of it ran.
        [queued] = store.unstarted_triggers(timedelta(0))
        assert json.loads(queued.trigger)["text"] == command
        assert store.recent_executions(10) == []
        assert replicas(sim, STAGING_WEB) == before

        with serving(sim, slack, tmp_path) as (served, bot):
            message = bot.finished(command)
            told = bot.ephemeral("alice", lambda text: f"`{command}`" in text)
            served.stop()
        assert message.text.split("\n")[0].endswith(": done")
        assert "is starting now: opsbot restarted after acknowledging it" in told
        assert [r.command for r in store.recent_executions(10)] == [command]
        assert store.unstarted_triggers(timedelta(0)) == []
        assert replicas(sim, STAGING_WEB) == 4
    finally:
        store.close()


def test_a_kill_9_during_a_step_is_reported_interrupted_not_repeated_approvals_intact(
    sim: SimCluster, slack: SlackStandIn, tmp_path: Path,
) -> None:
    command, prod = "scale shop-web 4", "scale shop-api 5 --env prod"
    before = replicas(sim, STAGING_WEB)
    store = Store.open(sqlite_url(tmp_path / "opsbot.db"))
    try:
        with serving(sim, slack, tmp_path) as (served, bot):
            assert bot.send_command("alice", prod).status_code == 200
            request = copy.deepcopy(slack.wait_message(
                lambda m: f"`{prod}`" in m.text and "awaiting approval" in m.text))
            request_id = str(button(request, "Approve")["value"])
            # The scale step reads the current scale, then writes it: the read hangs, so the
            # process dies inside the step, before anything changed.
            hung = sim.faults.inject(method="GET", path=r"/deployments/shop-web/scale$",
                                     status=None, delay_seconds=30)
            assert bot.send_command("alice", command).status_code == 200
            wait_until(lambda: hung.hits == 1)
            # Killed once its running message is posted and its address recorded (killed
            # between the two, opsbot cannot know the post went: it posts the outcome anew).
            ts = wait_until(lambda: next(
                (r.ts for r in store.recent_executions(10) if r.command == command), None))
            wait_until(lambda: store.outbox_stats().waiting == 0)
            running = slack.wait_message(lambda m: m.ts == ts)
            served.kill_9()
        sim.faults.clear()
        [record] = [r for r in store.recent_executions(10) if r.command == command]
        assert record.status == "running"
        assert [s.status for s in record.steps][:1] == ["running"]

        with serving(sim, slack, tmp_path) as (served, bot):
            message = slack.wait_message(
                lambda m: m.ts == running.ts and "interrupted" in m.text.split("\n")[0])
            assert message.text.startswith(f"⚠️ `{command}` in *staging*: interrupted")
            assert "was not resumed or repeated" in message.text
            # The request waited through the crash, and is decided as before.
            pending = store.get_request(request_id)
            assert pending is not None and pending.status == "pending"
            assert bot.click("bob", request, "Approve").status_code == 200
            assert bot.finished(prod).text.split("\n")[0].endswith(": done")
            served.stop()
        [interrupted] = [r for r in store.recent_executions(10) if r.command == command]
        assert interrupted.status == "interrupted"
        assert replicas(sim, STAGING_WEB) == before  # not resumed, not run again
        assert replicas(sim, PROD_API) == 5
    finally:
        store.close()
