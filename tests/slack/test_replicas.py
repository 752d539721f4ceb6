"""Two `opsbot serve` processes sharing one PostgreSQL database and one simulated cluster, as
several replicas run on a cluster: one leader on the Lease, a follower that takes over when
the leader is killed, claims that hold across processes, and a SIGTERM that lets go of
everything it held. Lease timings are short through the variables operators would set."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bot.store import Store
from bot.store.alerts import group_hash
from simcluster import SimCluster
from tests.slack.test_slack_serve import ROOT, SCRIPT, Served, free_port, wait_healthy
from tests.store.conftest import PostgresSchemas
from tests.support.alert_chain import wait_until
from tests.support.alert_payloads import alert, notification, to_bytes
from tests.support.signing import SIGNING_SECRET, block_actions_body, signed_headers
from tests.support.slack_standin import (
    BOT_TOKEN,
    BOT_USER,
    USERS,
    Call,
    Message,
    SlackDriver,
    SlackStandIn,
    button,
)

LEASE = "/apis/coordination.k8s.io/v1/namespaces/default/leases/opsbot-test"
TOKEN = "replica-test-alertmanager-token"
COMMAND = "scale shop-api 5 --env prod"
LEASE_SECONDS = 3.0
WAIT = 60.0  # generous: two processes and a shared machine


def config_file(tmp_path: Path) -> Path:
    """The demo world with prod requests expiring after a minute (the shortest allowed)."""
    config = yaml.safe_load((ROOT / "examples" / "demo.yaml").read_text(encoding="utf-8"))
    config["environments"]["prod"]["approval"]["ttl_minutes"] = 1
    path = tmp_path / "opsbot.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@contextmanager
def replica(name: str, sim: SimCluster, slack: SlackStandIn, tmp_path: Path, database: str,
            config: Path, **extra: str) -> Iterator[Served]:
    """One `opsbot serve` replica named `name` (its POD_NAME), up and healthy."""
    workdir = tmp_path / name
    workdir.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPSBOT_"))}
    env.update({
        "OPSBOT_CONFIG": str(config),
        "KUBECONFIG": sim.write_kubeconfig(str(workdir / "kubeconfig")),
        "OPSBOT_DATABASE_URL": database,
        "OPSBOT_LISTEN": f"127.0.0.1:{port}",
        "OPSBOT_ALERTMANAGER_TOKEN": TOKEN,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url,
        "POD_NAME": name,
        "OPSBOT_LEASE_NAME": "opsbot-test",
        "OPSBOT_LEASE_NAMESPACE": "default",
        "OPSBOT_LEASE_DURATION": str(LEASE_SECONDS),
        "OPSBOT_LEASE_RENEW_DEADLINE": "2",
        "OPSBOT_LEASE_RETRY_PERIOD": "0.5",
        "OPSBOT_HEARTBEAT_SECONDS": "1",
        **extra,
    })
    log = workdir / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-c", SCRIPT], env=env, cwd=workdir,
                                   stdout=out, stderr=out)
    try:
        served = Served(f"http://127.0.0.1:{port}", process, log)
        wait_healthy(served.url, process, timeout=WAIT)
        yield served
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def ready(served: Served) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{served.url}/readyz", timeout=10).json()
    return body


def holder(sim: SimCluster) -> str | None:
    lease = sim.get(LEASE)
    return None if lease is None else lease.get("spec", {}).get("holderIdentity")


def the_leader(sim: SimCluster, pair: dict[str, Served]) -> str:
    """The replica holding the Lease, once it also says so (and the other says it does not)."""
    def settled() -> str | None:
        name = holder(sim)
        if name not in pair:
            return None
        views = {n: ready(s)["leader"]["leader"] for n, s in pair.items()}
        return name if views == {n: n == name for n in pair} else None
    return wait_until(settled, timeout=WAIT, message=lambda: f"Lease: {sim.get(LEASE)}")


def leader_gauge(served: Served) -> float:
    text = httpx.get(f"{served.url}/metrics", timeout=10).text
    [line] = [ln for ln in text.splitlines() if ln.startswith("opsbot_leader ")]
    return float(line.split()[1])


@pytest.fixture
def database(pg_schemas: PostgresSchemas) -> str:
    return pg_schemas.new_url()


@pytest.fixture
def store(database: str) -> Iterator[Store]:
    opened = Store.open(database)  # migrated here first; the replicas find it current
    yield opened
    opened.close()


@pytest.fixture
def pair(sim: SimCluster, slack: SlackStandIn, tmp_path: Path, database: str,
         store: Store) -> Iterator[dict[str, Served]]:
    config = config_file(tmp_path)
    with ExitStack() as stack, concurrent.futures.ThreadPoolExecutor(2) as pool:
        # Started together: they race for the migrations' lock and for the Lease.
        starting = {name: pool.submit(stack.enter_context, replica(
            name, sim, slack, tmp_path, database, config)) for name in ("replica-a", "replica-b")}
        yield {name: future.result() for name, future in starting.items()}


def post_both(pair: dict[str, Served], path: str, body: bytes | str,
              headers: dict[str, str]) -> list[httpx.Response]:
    """The same request delivered to both replicas at once."""
    def send(served: Served) -> httpx.Response:
        return httpx.post(f"{served.url}{path}", content=body, headers=headers, timeout=30)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        return list(pool.map(send, pair.values()))


def alert_posts(slack: SlackStandIn) -> list[Call]:
    """Posts of alert groups' messages (the runs they start post their own)."""
    return [c for c in slack.calls_to("chat.postMessage")
            if c.params.get("channel") == "C0ALERTS" and c.text.startswith("FIRING ")]


def request_on(served: Served, slack: SlackStandIn,
               command: str = COMMAND) -> tuple[Message, str]:
    with httpx.Client(timeout=30) as http:
        bot = SlackDriver(served.url, http, slack, SIGNING_SECRET)
        assert bot.send_command("alice", command).status_code == 200
    message = slack.wait_message(
        lambda m: f"`{command}`" in m.text and "awaiting approval" in m.text, WAIT)
    return message, str(button(message, "Approve")["value"])


def test_one_leader_claims_across_replicas_and_takeover_after_kill(
    pair: dict[str, Served], sim: SimCluster, slack: SlackStandIn, store: Store,
) -> None:
    leader = the_leader(sim, pair)
    follower = next(name for name in pair if name != leader)
    assert (leader_gauge(pair[leader]), leader_gauge(pair[follower])) == (1.0, 0.0)
    # The follower reads the Lease every retry period: it knows the holder by the next one.
    wait_until(lambda: ready(pair[follower])["leader"]["holder"] == leader, timeout=WAIT)

    # The same signed approval click, delivered to both replicas, starts one execution.
    message, request_id = request_on(pair[follower], slack)
    raw = {"type": "message", "ts": message.ts, "text": message.text,
           "blocks": message.blocks, "user": BOT_USER}
    body = block_actions_body(USERS["bob"], button(message, "Approve"),
                              channel_id=message.channel, message=raw)
    answers = post_both(pair, "/slack/events", body, signed_headers(body, SIGNING_SECRET))
    assert [a.status_code for a in answers] == [200, 200]
    done = wait_until(lambda: (r := store.get_request(request_id)) and r.status == "executed"
                      and r, timeout=WAIT)
    runs = [r for r in store.recent_executions(50) if r.request_id == request_id]
    assert [r.id for r in runs] == [done.execution_id]
    wait_until(lambda: store.get_execution(done.execution_id).status == "succeeded",  # type: ignore[union-attr]
               timeout=WAIT)
    assert sim.get("/apis/apps/v1/namespaces/shop-prod/deployments/shop-api")["spec"][  # type: ignore[index]
        "replicas"] == 5

    # The same Alertmanager notification, posted to both, is decided on once.
    payload = notification([alert({"alertname": "KubePodCrashLooping", "severity": "warning",
                                   "namespace": "shop-staging",
                                   "pod": "shop-worker-5d8f7c9b6-x2x4q",
                                   "container": "worker"})])
    answers = post_both(pair, "/alertmanager", to_bytes(payload), {
        "content-type": "application/json", "authorization": f"Bearer {TOKEN}"})
    assert [a.status_code for a in answers] == [200, 200]
    wait_until(lambda: store.unprocessed_notifications() == [], timeout=WAIT)
    def decided() -> list[Any]:
        # A run's execution is made first, then its id is written on the run: wait for both.
        runs = store.alert_runs(group_hash(payload["groupKey"]))
        automatic = [r for r in store.recent_executions(50) if r.source == "alert"]
        return runs if runs and len(automatic) == len([r for r in runs if r.execution_id]) \
            else []

    alert_runs = wait_until(decided, timeout=WAIT,
                            message="no decision, or executions without a run (twice?)")
    assert len({(r.fingerprint, r.runbook) for r in alert_runs}) == len(alert_runs)
    # The group's message goes through the outbox: once nothing waits there, it was posted once.
    wait_until(lambda: store.outbox_stats().waiting == 0 and alert_posts(slack), timeout=WAIT)
    posts = alert_posts(slack)
    assert len(posts) == 1, [c.text for c in posts]

    # A new request, then kill -9 the leader: the follower takes over within the lease
    # duration and, once the request is due, expires it once.
    _, second_id = request_on(pair[leader], slack, "scale shop-api 6 --env prod")
    pair[leader].process.send_signal(signal.SIGKILL)
    pair[leader].process.wait(timeout=30)
    wait_until(lambda: holder(sim) == follower and ready(pair[follower])["leader"]["leader"],
               timeout=WAIT, message=lambda: f"Lease: {sim.get(LEASE)}")
    assert leader_gauge(pair[follower]) == 1.0
    expired = wait_until(lambda: (r := store.get_request(second_id)) and r.status == "expired"
                         and r, timeout=120)
    assert expired.status == "expired"
    told = slack.wait_for(lambda c: c.method == "chat.postEphemeral"
                          and second_id in c.text and "expired" in c.text, WAIT)
    assert told is not None
    records = [r for r in store.export_audit() if r["request_id"] == second_id]
    assert [r["outcome"] for r in records].count("expired") == 1
    lease = sim.get(LEASE)
    assert lease is not None and lease["spec"]["leaseTransitions"] >= 1
    assert json.dumps(lease)  # a plain object the API served


def test_sigterm_during_a_deploy_step_interrupts_it_and_releases_lock_and_lease(
    sim: SimCluster, slack: SlackStandIn, tmp_path: Path, database: str, store: Store,
) -> None:
    sim.script_never_ready("shop-staging", "shop-api")  # the rollout step waits on and on
    config = config_file(tmp_path)
    with replica("replica-a", sim, slack, tmp_path, database, config,
                 OPSBOT_SHUTDOWN_GRACE="2") as served:
        wait_until(lambda: holder(sim) == "replica-a", timeout=WAIT)
        with httpx.Client(timeout=30) as http:
            bot = SlackDriver(served.url, http, slack, SIGNING_SECRET)
            assert bot.send_command("alice", "deploy shop-api 1.5.0").status_code == 200

        def deploying() -> str | None:
            for record in store.recent_executions(5):
                if record.runbook == "deploy" and any(s.status == "running"
                                                      for s in record.steps):
                    return record.id
            return None
        execution_id = wait_until(deploying, timeout=WAIT)
        assert store.get_lock("staging/shop-api") is not None
        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(timeout=60) in (0, -signal.SIGTERM)
    record = store.get_execution(execution_id)
    assert record is not None and record.owner == "replica-a"
    assert record.status in ("succeeded", "interrupted", "failed")
    assert all(step.status != "running" for step in record.steps)
    if record.status == "interrupted":
        assert any(step.status == "interrupted" for step in record.steps)
    assert store.get_lock("staging/shop-api") is None
    assert holder(sim) is None  # released, not left to expire
    assert store.live_replicas(timedelta(minutes=5)) == set()  # its heartbeat row is gone
    log = served.log.read_text(errors="replace")
    assert "released the Lease" in log
