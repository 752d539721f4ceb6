"""Socket Mode: with an app token, opsbot dials Slack instead of serving /slack/events, acks
envelopes over the socket, and still answers through the Web API and the HTTP probes."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.services import Services
from bot.slack.server import create_app
from simcluster import SimCluster
from tests.slack.test_slack_serve import serve_process
from tests.support.alert_chain import wait_until
from tests.support.signing import SIGNING_SECRET, slash_command_body
from tests.support.slack_standin import (
    APP_TOKEN,
    BOT_TOKEN,
    DEFAULT_TIMEOUT,
    ServerThread,
    SlackDriver,
    SlackStandIn,
    SocketModeStandIn,
)


@pytest.fixture
def socket_mode(slack: SlackStandIn) -> Iterator[SocketModeStandIn]:
    link = SocketModeStandIn().start()
    slack.socket_mode = link
    yield link
    link.stop()


def test_socket_mode_runs_commands_over_the_socket(
    services: Services, slack: SlackStandIn, socket_mode: SocketModeStandIn
) -> None:
    server = ServerThread(create_app(services, app_token=APP_TOKEN, shutdown_grace=10)).start()
    try:
        socket_mode.wait_connected()
        with httpx.Client(timeout=30) as http:
            assert http.get(f"{server.url}/healthz").status_code == 200
            assert http.post(f"{server.url}/slack/events").status_code == 404
            payload = dict(parse_qsl(slash_command_body("U0ALICE", "status shop-api")))
            socket_mode.send({"envelope_id": "env-1", "type": "slash_commands",
                              "accepts_response_payload": True, "payload": payload})
            assert socket_mode.wait_ack("env-1") == {"envelope_id": "env-1"}
            message = SlackDriver(server.url, http, slack, SIGNING_SECRET).finished(
                "status shop-api")
        assert message.text.split("\n")[0].endswith(": done")
        opened = slack.calls_to("apps.connections.open")
        assert [c.auth for c in opened] == [f"Bearer {APP_TOKEN}"]
    finally:
        server.stop()


def test_opsbot_serve_picks_socket_mode_from_slack_app_token(
    sim: SimCluster, slack: SlackStandIn, socket_mode: SocketModeStandIn, tmp_path: Path
) -> None:
    """The operator's path: `opsbot serve` with SLACK_APP_TOKEN set and no signing secret."""
    with serve_process(["-m", "bot.cli", "serve"], sim, slack, tmp_path,
                       SLACK_APP_TOKEN=APP_TOKEN) as served:
        url = served.url
        socket_mode.wait_connected()
        with httpx.Client(timeout=30) as http:
            assert http.post(f"{url}/slack/events").status_code == 404
            payload = dict(parse_qsl(slash_command_body("U0ALICE", "scale shop-web 3")))
            socket_mode.send({"envelope_id": "env-serve", "type": "slash_commands",
                              "accepts_response_payload": True, "payload": payload})
            assert socket_mode.wait_ack("env-serve") == {"envelope_id": "env-serve"}
            message = SlackDriver(url, http, slack, SIGNING_SECRET).finished("scale shop-web 3")
            # The acknowledgement's latency, as an operator scrapes it.
            acks = [s for f in text_string_to_metric_families(http.get(f"{url}/metrics").text)
                    for s in f.samples if s.name == "opsbot_ack_seconds_count"]
            assert [(s.labels, s.value) for s in acks] == [({"transport": "socket"}, 1.0)]
        assert message.text.split("\n")[0].endswith(": done")
        web = sim.get("/apis/apps/v1/namespaces/shop-staging/deployments/shop-web")
        assert web is not None and web["spec"]["replicas"] == 3
        served.stop()
    output = served.log.read_text(errors="replace")
    assert APP_TOKEN not in output and BOT_TOKEN not in output


MARK = "zq-envelope-marker-91c2"


def test_malformed_envelopes_are_refused_and_the_socket_keeps_working(
    services: Services, slack: SlackStandIn, socket_mode: SocketModeStandIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The checks of /slack/events apply to envelopes too: each bad one is left unacked with
    one log line, no traceback and not its payload, at any level; the next good one runs."""
    caplog.set_level(logging.DEBUG)
    command = dict(parse_qsl(slash_command_body("U0ALICE", f"scale shop-web 5 --reason {MARK}")))
    bad: list[tuple[str, Any]] = [
        ("interactive", MARK),
        ("interactive", [MARK]),
        ("interactive", {"type": "block_actions", "user": {"id": "U0ALICE"}, "actions": [],
                         "trigger_id": MARK}),
        ("interactive", {"type": "view_submission", "user": {"id": "U0ALICE"}, "m": MARK}),
        ("interactive", {"type": "shortcut", "callback_id": MARK}),
        ("slash_commands", {k: v for k, v in command.items() if k != "user_id"}),
        ("slash_commands", {**command, "authorizations": MARK}),
        ("slash_commands", {**command, "channel_id": 7}),
        ("events_api", {"type": "event_callback", "event": MARK}),
    ]
    server = ServerThread(create_app(services, app_token=APP_TOKEN, shutdown_grace=10)).start()
    try:
        socket_mode.wait_connected()
        for number, (kind, payload) in enumerate(bad):
            socket_mode.send({"envelope_id": f"bad-{number}", "type": kind,
                              "accepts_response_payload": False, "payload": payload})

        def refusals() -> list[logging.LogRecord]:
            return [r for r in caplog.records if "envelope refused" in r.getMessage()]

        deadline = time.monotonic() + 20
        while len(refusals()) < len(bad) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(refusals()) == len(bad)

        good = dict(parse_qsl(slash_command_body("U0ALICE", "status shop-api")))
        socket_mode.send({"envelope_id": "good", "type": "slash_commands",
                          "accepts_response_payload": True, "payload": good})
        assert socket_mode.wait_ack("good") == {"envelope_id": "good"}
        with httpx.Client(timeout=30) as http:
            SlackDriver(server.url, http, slack, SIGNING_SECRET).finished("status shop-api")
    finally:
        server.stop()
    assert not [a for a in socket_mode.acks if str(a.get("envelope_id")).startswith("bad-")]
    assert [r.getMessage() for r in refusals()] == [r.getMessage().split("\n")[0]
                                                    for r in refusals()]
    for record in caplog.records:
        text = record.getMessage() + (record.exc_text or "")
        assert MARK not in text, f"an envelope reached the log: {text[:200]}"
        assert record.exc_info is None, text[:200]
    assert [r.actor for r in services.store.recent_executions(5)] == ["U0ALICE"]


def test_an_unreachable_slack_at_start_does_not_stop_the_server(
    services: Services, slack: SlackStandIn, socket_mode: SocketModeStandIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Slack's API fails when opsbot starts: the probes and the Alertmanager webhook are served
    at once, one warning says opsbot retries, and once Slack answers the socket opens and
    commands run over it."""
    caplog.set_level(logging.INFO, logger="opsbot")
    slack.fault("error", "apps.connections.open", status=503)
    app = create_app(services, app_token=APP_TOKEN, shutdown_grace=10, auth_retry=(0.05, 0.2))
    server = ServerThread(app).start()
    try:
        slack.wait_for(lambda c: c.method == "apps.connections.open" and not c.served)
        with httpx.Client(timeout=30) as http:
            assert http.get(f"{server.url}/healthz").status_code == 200
            assert http.get(f"{server.url}/readyz").status_code == 200
            # several tries while it fails, and still one line about it
            slack.wait_for(lambda c: len([x for x in slack.calls_to("apps.connections.open")
                                          if not x.served]) >= 3)
            assert socket_mode.acks == []
            slack.heal()
            socket_mode.wait_connected()
            payload = dict(parse_qsl(slash_command_body("U0ALICE", "status shop-api")))
            socket_mode.send({"envelope_id": "env-late", "type": "slash_commands",
                              "accepts_response_payload": True, "payload": payload})
            assert socket_mode.wait_ack("env-late") == {"envelope_id": "env-late"}
            SlackDriver(server.url, http, slack, SIGNING_SECRET).finished("status shop-api")
    finally:
        server.stop()
    said = [r.getMessage() for r in caplog.records if "Socket Mode" in r.getMessage()]
    assert said == [
        "cannot reach Slack for Socket Mode (http_503); the webhook and probes are served "
        "meanwhile, retrying until Slack answers",
        "connected to Slack over Socket Mode",
    ]


def test_a_refused_app_token_is_said_once_and_fails_readiness(
    services: Services, slack: SlackStandIn, socket_mode: SocketModeStandIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A wrong app token will not start working by retrying: one error, no retries, and
    `/readyz` says why (so a rollout with a bad token stops)."""
    caplog.set_level(logging.INFO, logger="opsbot")
    app = create_app(services, app_token="xapp-1-wrong", shutdown_grace=10,
                     auth_retry=(0.05, 0.2))
    server = ServerThread(app).start()
    try:
        with httpx.Client(timeout=30) as http:
            def readiness() -> httpx.Response | None:
                answer = http.get(f"{server.url}/readyz")
                return answer if answer.status_code == 503 else None

            answer = wait_until(readiness, timeout=DEFAULT_TIMEOUT)
            assert answer.json()["problem"] == "Slack refused the app token (invalid_auth)"
            assert http.get(f"{server.url}/healthz").status_code == 200
    finally:
        server.stop()
    assert len(slack.calls_to("apps.connections.open")) == 1
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "Slack refused the app token for Socket Mode (invalid_auth); no commands arrive until "
        "SLACK_APP_TOKEN is fixed and opsbot restarted"]
    assert "xapp-1-wrong" not in caplog.text
