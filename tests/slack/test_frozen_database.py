"""A PostgreSQL that accepts connections but never answers, behind a proxy the test freezes:
the running server still answers within seconds (the intake 503, so Alertmanager retries; a
slash command the user's "nothing ran, try again"; `/readyz` not ready), and works again
once the database answers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bot.services import Services
from simcluster import SimCluster
from tests.store.conftest import PostgresSchemas
from tests.support.alert_payloads import alert, notification, to_bytes
from tests.support.databases import demo_server
from tests.support.slack_standin import SlackDriver, SlackStandIn
from tests.support.tcp_proxy import FreezableProxy

pytestmark = pytest.mark.postgres

TOKEN = "am-frozen-token-0123456789"
# A hang detector, not a speed requirement: without bounds these waits never end.
ANSWER_WITHIN = 15.0
NOT_RECORDED = "could not record your command"


@pytest.fixture
def proxy(pg_schemas: PostgresSchemas) -> Iterator[tuple[FreezableProxy, str]]:
    running, url = FreezableProxy.in_front_of(pg_schemas.new_url())
    yield running, url
    running.stop()


@pytest.fixture
def served(proxy: tuple[FreezableProxy, str], sim: SimCluster, slack: SlackStandIn,
           tmp_path: Path) -> Iterator[tuple[SlackDriver, Services]]:
    with demo_server(sim, slack, tmp_path, proxy[1], OPSBOT_ALERTMANAGER_TOKEN=TOKEN) as both:
        try:
            yield both
        finally:
            proxy[0].thaw()  # or stopping would wait on the database too


def notify(bot: SlackDriver, name: str) -> tuple[httpx.Response, float]:
    body = to_bytes(notification([alert({"alertname": name, "namespace": "shop-staging"})]))
    started = time.monotonic()
    response = bot.http.post(f"{bot.url}/alertmanager", content=body, headers={
        "authorization": f"Bearer {TOKEN}", "content-type": "application/json"})
    return response, time.monotonic() - started


def test_a_database_that_never_answers_gets_answers_not_hangs(
        served: tuple[SlackDriver, Services], proxy: tuple[FreezableProxy, str]) -> None:
    bot, services = served
    assert notify(bot, "BeforeTheFreeze")[0].status_code == 200
    assert bot.http.get(f"{bot.url}/readyz").status_code == 200
    assert bot.send_command("alice", "scale shop-api 5 --env prod").status_code == 200
    request = bot.slack.wait_message(lambda m: "awaiting approval" in m.text)

    proxy[0].freeze()
    response, took = notify(bot, "DuringTheFreeze")
    assert response.status_code == 503 and took < ANSWER_WITHIN
    assert response.json()["status"] == "unavailable"

    started = time.monotonic()
    ready = bot.http.get(f"{bot.url}/readyz")
    assert ready.status_code == 503 and time.monotonic() - started < ANSWER_WITHIN

    started = time.monotonic()
    assert bot.send_command("alice", "scale shop-web 3").status_code == 200
    told = bot.ephemeral("alice", lambda text: NOT_RECORDED in text)
    assert "nothing ran" in told and time.monotonic() - started < ANSWER_WITHIN

    # Slack's trigger_id lasts 3 seconds: the deny form opens without the database.
    assert bot.click("bob", request, "Deny").status_code == 200
    assert bot.slack.wait_view()["callback_id"] == "opsbot_deny_modal"

    proxy[0].thaw()
    assert notify(bot, "AfterTheFreeze")[0].status_code == 200
    assert bot.http.get(f"{bot.url}/readyz").status_code == 200
    assert bot.send_command("alice", "status shop-web").status_code == 200
    bot.finished("status shop-web")
    assert [e.command for e in services.store.recent_executions(5)] == ["status shop-web"]
