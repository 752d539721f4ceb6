"""Secrets never reach a log or a chat message. The bot token, the signing secret, the app
token, the Alertmanager webhook token, the Argo CD token, the database password and passwords
in the Prometheus and Alertmanager URLs are set to recognisable values; commands that succeed,
fail, are refused or are mistyped, and alerts with right and wrong credentials, go through the
real server; then every log record (DEBUG and up, with tracebacks), every message posted to the
Slack stand-in, every answer the server gave, `/metrics` and the audit log are searched for
each of them."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import MetaData, create_engine, select
from sqlalchemy.engine import make_url

from bot.config import load_settings
from bot.services import Services
from bot.slack.app import build_services
from bot.slack.server import create_app
from simcluster import SimCluster
from tests.store.conftest import PostgresSchemas
from tests.support.alert_payloads import alert, notification, to_bytes
from tests.support.slack_standin import CHANNEL, ServerThread, SlackDriver, SlackStandIn

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"
SECRETS = {
    "bot token": "xoxb-SECRET-bot-4e1f9a",
    "signing secret": "SECRET-signing-8c2d77",
    "app token": "xapp-SECRET-app-19b3e0",
    "Alertmanager token": "SECRET-am-token-5a6f21",
    "Argo CD token": "SECRET-argocd-0d9e44",
    "database password": "SECRET-dbpass-73c1aa",
    "Prometheus password": "SECRET-prompass-2b8f10",
    "Alertmanager API password": "SECRET-amapi-6e0c52",
}


@pytest.fixture
def secret_slack() -> Iterator[SlackStandIn]:
    """A Slack stand-in that accepts only the secret bot token."""
    standin = SlackStandIn(token=SECRETS["bot token"]).start()
    standin.usergroups["S0APPROVERS"] = ["U0BOB", "U0CAROL"]
    yield standin
    standin.stop()


@pytest.fixture
def secret_server(sim: SimCluster, secret_slack: SlackStandIn, pg_schemas: PostgresSchemas,
                  tmp_path: Path) -> Iterator[tuple[SlackDriver, Services]]:
    # PostgreSQL here trusts local connections: the password is sent and ignored, and so must
    # be kept out of every log line as if it mattered.
    database = make_url(pg_schemas.new_url()).set(password=SECRETS["database password"])
    settings = load_settings(DEMO_CONFIG, environ={
        "KUBECONFIG": sim.write_kubeconfig(str(tmp_path / "kubeconfig")),
        "OPSBOT_DATABASE_URL": database.render_as_string(hide_password=False),
        "SLACK_BOT_TOKEN": SECRETS["bot token"],
        "SLACK_SIGNING_SECRET": SECRETS["signing secret"],
        "SLACK_APP_TOKEN": SECRETS["app token"],  # in the settings; HTTP is used all the same
        "SLACK_API_URL": secret_slack.api_url,
        "OPSBOT_ALERTMANAGER_TOKEN": SECRETS["Alertmanager token"],
        "ARGOCD_URL": "http://127.0.0.1:9/", "ARGOCD_TOKEN": SECRETS["Argo CD token"],
        # Nothing listens there: the metrics commands fail, and their errors name the URL.
        "PROMETHEUS_URL": f"http://opsbot:{SECRETS['Prometheus password']}@127.0.0.1:9/",
        "ALERTMANAGER_URL": f"http://opsbot:{SECRETS['Alertmanager API password']}@127.0.0.1:9/",
    })
    # The deploy's alert pre-check is off in staging so that it reaches the analysis, which
    # asks Prometheus; `silence` asks Alertmanager.
    staging = settings.environments["staging"]
    deploy = staging.deploy.model_copy(update={"prechecks": staging.deploy.prechecks.model_copy(
        update={"no_critical_alerts": False})})
    settings = settings.model_copy(update={
        "alerts": settings.alerts.model_copy(update={"channel": "C0ALERTS"}),
        "environments": {**settings.environments,
                         "staging": staging.model_copy(update={"deploy": deploy})}})
    services = build_services(settings)
    server = ServerThread(create_app(services, shutdown_grace=10)).start()
    try:
        with httpx.Client(timeout=60.0) as http:
            yield SlackDriver(server.url, http, secret_slack, SECRETS["signing secret"]), services
    finally:
        server.stop()
        services.close()


def every_row(url: str) -> list[str]:
    """Every row of every table of the store, as text: what someone who can read the database
    sees."""
    engine = create_engine(url)
    try:
        tables = MetaData()
        tables.reflect(engine)
        with engine.connect() as conn:
            return [str(tuple(row)) for table in tables.sorted_tables
                    for row in conn.execute(select(table))]
    finally:
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.slow
def test_no_secret_reaches_a_log_line_or_a_chat_message(
        secret_server: tuple[SlackDriver, Services], secret_slack: SlackStandIn,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    bot, services = secret_server
    answers: list[str] = []
    for user, text in [
        ("alice", "status shop-api"),
        ("alice", "scale shop-web 3 --reason routine"),
        ("alice", "deploy shop-api 1.5.0 --dry-run"),
        # Prometheus and Alertmanager unreachable: errors that name them
        ("alice", "deploy shop-api 1.5.0"),
        ("alice", "silence KubePodCrashLooping --for 1h"),
        ("alice", "scale shop-web 3 --env prod"),  # waits for approval
        ("mallory", "restart shop-api"),  # denied
        ("alice", "scale shop-web ٣"),  # a usage error
        ("alice", "help"),
    ]:
        answers.append(bot.send_command(user, text).text)
    bot.finished("status shop-api")
    bot.finished("scale shop-web 3 --reason routine")
    bot.finished("deploy shop-api 1.5.0", timeout=120)
    bot.finished("silence KubePodCrashLooping --for 1h")
    bot.ephemeral("mallory")
    headers = {"authorization": f"Bearer {SECRETS['Alertmanager token']}"}
    labels = {"alertname": "KubePodCrashLooping", "severity": "warning",
              "namespace": "shop-staging", "pod": "shop-worker-5d8f7c9b6-x2x4q"}
    body = to_bytes(notification([alert(labels)]))
    stored = bot.http.post(f"{bot.url}/alertmanager", content=body, headers=headers)
    assert stored.status_code == 200
    for wrong in (f"Bearer {SECRETS['Alertmanager token']}x", "Basic eDp5", ""):
        refused = bot.http.post(f"{bot.url}/alertmanager", content=body,
                                headers={"authorization": wrong} if wrong else {})
        assert refused.status_code == 401
        answers.append(refused.text)
    secret_slack.wait_message(lambda m: m.channel == "C0ALERTS")
    bot.send_command("alice", "status shop-web")
    bot.finished("status shop-web")  # whatever ran before has been reported by now
    answers.append(stored.text)
    answers.append(bot.http.get(f"{bot.url}/metrics").text)
    answers.append(bot.http.get(f"{bot.url}/readyz").text)
    answers.extend(json.dumps(record, default=str) for record in services.store.export_audit())
    in_store = every_row(services.settings.database_url or "")
    assert any("shop-web" in row for row in in_store)  # the tables were read, not nothing

    posted = [json.dumps(call.params) for call in secret_slack.calls]
    logged = [record.getMessage() + "\n" + (record.exc_text or "") + str(record.args)
              for record in caplog.records]
    assert any(CHANNEL in text for text in posted)  # the messages were searched, not nothing
    # The errors that name the unreachable servers were searched too.
    assert any("Prometheus at http" in text for text in logged)
    assert any("Alertmanager at http" in text for text in posted)
    # Nothing failed on the way (here a deadlock between the outbox sender and an enqueue once
    # lost the final message of a command).
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    for name, secret in SECRETS.items():
        for where, texts in (("a chat message", posted), ("a log record", logged),
                             ("an HTTP answer or the audit log", answers),
                             ("the database", in_store)):
            leaked = [text for text in texts if secret in text]
            assert not leaked, f"the {name} reached {where}: {leaked[0][:300]}"
