"""The real chain: Prometheus (Debian package) evaluates an alerting rule over a test exporter,
Alertmanager (Debian package) routes it with a bearer token to the running opsbot, opsbot runs
the matching runbook against the simulated cluster and posts to the Slack stand-in; the
resolution updates the same message. Also: a 5xx from opsbot is retried by Alertmanager and
leads to exactly one execution; a wrong token is refused and nothing is stored.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY

from bot.services import Services
from bot.slack.server import create_app
from bot.store import Store
from simcluster import SimCluster
from tests.alerts.conftest import TOKEN
from tests.alerts.test_alert_intake import ALERTS, slack_settings
from tests.support.alert_chain import AlertRule, StartChain
from tests.support.slack_standin import ServerThread, SlackStandIn

pytest_plugins = ["tests.support.fixtures_alert_chain"]
pytestmark = pytest.mark.slow

RULES = (AlertRule("TestCrashLoop", annotations={"summary": "{{ $labels.pod }} crash-loops"}),)
WORKER_POD = "shop-worker-5d8f7c9b6-x2x4q"


def start_bot(sim: SimCluster, tmp_path: Path, slack: SlackStandIn,
              busy_timeout_ms: int = 15_000) -> tuple[Services, ServerThread]:
    settings = slack_settings(sim, tmp_path, slack)
    store = Store.open(settings.database_url or "", busy_timeout_ms=busy_timeout_ms)
    from bot.slack.alert_board import SlackAlertBoard
    services = Services.build(settings, store=store,
                              alert_board=SlackAlertBoard(store, ALERTS))
    return services, ServerThread(create_app(services, shutdown_grace=5)).start()


@pytest.fixture
def bot(alert_sim: SimCluster, tmp_path: Path,
        slack: SlackStandIn) -> Iterator[tuple[Services, ServerThread]]:
    services, server = start_bot(alert_sim, tmp_path, slack)
    yield services, server
    server.stop()
    services.close()


def executions(services: Services) -> list[str]:
    return [e.runbook for e in services.store.recent_executions(50)]


def test_an_alert_fired_in_prometheus_runs_its_runbook_once_and_resolves_in_place(
        alert_chain: StartChain, bot: tuple[Services, ServerThread], slack: SlackStandIn) -> None:
    services, server = bot
    chain = alert_chain(f"{server.url}/alertmanager", TOKEN, rules=RULES)
    chain.fire("TestCrashLoop", namespace="shop-staging", deployment=None, pod=WORKER_POD)
    message = slack.wait_message(
        lambda m: m.channel == ALERTS and not m.thread_ts and "ran, succeeded" in
        json.dumps(m.blocks), timeout=60)
    assert message.text.startswith("FIRING TestCrashLoop in staging")
    assert f"pod {WORKER_POD} crash-loops" in json.dumps(message.blocks) or \
        f"{WORKER_POD} crash-loops" in json.dumps(message.blocks)
    thread = slack.wait_message(lambda m: m.thread_ts == message.ts and "done" in m.text)
    assert "run test-diag app=shop-worker --env staging" in thread.text

    chain.resolve("TestCrashLoop", pod=WORKER_POD)
    slack.wait_message(lambda m: m.ts == message.ts and m.text.startswith("RESOLVED"),
                       timeout=60)
    assert executions(services) == ["test-diag"]  # Alertmanager's repeats ran nothing new
    tops = [c for c in slack.calls_to("chat.postMessage")
            if c.params.get("channel") == ALERTS and not c.params.get("thread_ts")]
    assert len(tops) == 1


def test_a_5xx_is_retried_by_alertmanager_and_runs_once(
        alert_chain: StartChain, alert_sim: SimCluster, tmp_path: Path,
        slack: SlackStandIn) -> None:
    services, server = start_bot(alert_sim, tmp_path, slack, busy_timeout_ms=100)
    blocker = sqlite3.connect(str(tmp_path / "opsbot.db"), isolation_level=None)
    try:
        chain = alert_chain(f"{server.url}/alertmanager", TOKEN, rules=RULES)
        before = _sample("opsbot_alert_notifications_total", outcome="unavailable")
        blocker.execute("BEGIN EXCLUSIVE")  # the store cannot commit: opsbot answers 503
        chain.fire("TestCrashLoop", namespace="shop-staging", deployment=None, pod=WORKER_POD)
        chain.wait_until(
            lambda: _sample("opsbot_alert_notifications_total", outcome="unavailable") > before,
            message="opsbot never answered 503")
        blocker.execute("ROLLBACK")
        slack.wait_message(lambda m: m.channel == ALERTS and not m.thread_ts
                           and "ran, succeeded" in json.dumps(m.blocks), timeout=60)
        assert chain.alertmanager_metric("alertmanager_notification_requests_failed_total") >= 1
        chain.wait_until(lambda: services.store.unprocessed_notifications() == [])
        assert executions(services) == ["test-diag"]
    finally:
        blocker.close()
        server.stop()
        services.close()


def test_a_wrong_token_is_refused_and_nothing_is_stored(
        alert_chain: StartChain, bot: tuple[Services, ServerThread]) -> None:
    services, server = bot
    chain = alert_chain(f"{server.url}/alertmanager", "not-the-token", rules=RULES)
    chain.fire("TestCrashLoop", namespace="shop-staging", deployment=None, pod=WORKER_POD)
    chain.wait_until(
        lambda: chain.alertmanager_metric("alertmanager_notifications_failed_total") >= 1,
        message="Alertmanager never failed a notification")
    assert _sample("opsbot_alert_notifications_total", outcome="unauthorized") >= 1
    assert services.store.unprocessed_notifications() == []
    assert executions(services) == []
    with httpx.Client() as http:  # the server itself is fine
        assert http.get(f"{server.url}/healthz").status_code == 200


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0
