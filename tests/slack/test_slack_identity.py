"""Slack's API down at start loses no command: `auth.test` is asked once, in the background,
retried until Slack answers (one log line while it fails), and never on a command or click."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from bot.config import Settings, load_settings
from bot.services import Services
from bot.slack.app import build_services
from bot.slack.server import create_app
from tests.slack.conftest import DEMO_CONFIG
from tests.support.signing import SIGNING_SECRET
from tests.support.slack_standin import BOT_TOKEN, ServerThread, SlackDriver, SlackStandIn

FAST_RETRY = (0.05, 0.2)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout}s")
        time.sleep(0.02)


def auth_tests(slack: SlackStandIn) -> int:
    return len(slack.calls_to("auth.test"))


def final_status(services: Services) -> str | None:
    records = services.store.recent_executions(1)
    return records[0].status if records and records[0].status != "running" else None


@pytest.fixture
def failing_auth(slack: SlackStandIn) -> SlackStandIn:
    slack.failing["auth.test"] = "service_unavailable"
    return slack


@pytest.fixture
def started(services: Services, failing_auth: SlackStandIn) -> Iterator[SlackDriver]:
    """opsbot started while Slack answers auth.test with an error."""
    server = ServerThread(create_app(services, shutdown_grace=10, auth_retry=FAST_RETRY)).start()
    with httpx.Client(timeout=30.0) as http:
        yield SlackDriver(server.url, http, failing_auth, SIGNING_SECRET)
    server.stop()


def test_commands_and_clicks_run_while_auth_test_fails(
        started: SlackDriver, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="opsbot.slack")
    slack = started.slack
    answer = started.send_command("alice", "status shop-api")
    assert (answer.status_code, answer.content) == (200, b"")  # acked, no apology
    message = started.finished("status shop-api")
    assert message.text.split("\n")[0].endswith(": done")
    wait_until(lambda: auth_tests(slack) >= 3, "auth.test retried")
    assert started.click("bob", message, "Diagnose").status_code == 200
    started.finished("diag shop-api --env staging")

    logged = caplog.get_records("setup") + caplog.records  # it started failing in setup
    failures = [r for r in logged if "auth.test failed" in r.getMessage()]
    assert len(failures) == 1  # one line however often it is retried
    assert "service_unavailable" in failures[0].getMessage()

    del slack.failing["auth.test"]
    wait_until(lambda: any("signed in to Slack as opsbot" in r.getMessage()
                           for r in caplog.records), "auth.test answered")
    answered = auth_tests(slack)
    started.send_command("alice", "status shop-web")
    started.finished("status shop-web")
    assert auth_tests(slack) == answered  # no retry once it answered, and none for a command


@pytest.fixture
def unreachable(settings: Settings) -> Iterator[SlackStandIn]:
    """A Slack stand-in whose port refuses connections until it is started."""
    down = SlackStandIn().bind()
    yield down
    down.stop()


def test_a_command_runs_while_slack_is_unreachable_at_start(
        settings: Settings, unreachable: SlackStandIn, tmp_path: Path) -> None:
    cut_off = load_settings(DEMO_CONFIG, environ={
        "KUBECONFIG": str(settings.kubeconfig),
        "OPSBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'cut-off.db'}",
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": unreachable.api_url,
    })
    services = build_services(cut_off)
    server = ServerThread(create_app(services, shutdown_grace=10, auth_retry=FAST_RETRY)).start()
    try:
        with httpx.Client(timeout=30.0) as http:
            bot = SlackDriver(server.url, http, unreachable, SIGNING_SECRET)
            answer = bot.send_command("alice", "scale shop-web 3")
            assert (answer.status_code, answer.content) == (200, b"")
            wait_until(lambda: final_status(services) is not None, "the command ran")
            assert final_status(services) == "succeeded"  # its message could not be posted

            unreachable.start()  # Slack is back
            wait_until(lambda: auth_tests(unreachable) >= 1, "auth.test once Slack is back")
            assert bot.send_command("alice", "status shop-web").status_code == 200
            bot.finished("status shop-web")
    finally:
        server.stop()
        services.close()
