"""Socket Mode: with an app token, opsbot dials Slack instead of serving /slack/events, acks
envelopes over the socket, and still answers through the Web API and the HTTP probes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import pytest

from bot.services import Services
from bot.simcluster import SimCluster
from bot.slack.server import create_app
from tests.slack.test_slack_serve import serve_process
from tests.support.signing import SIGNING_SECRET, slash_command_body
from tests.support.slack_standin import (
    APP_TOKEN,
    BOT_TOKEN,
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
        assert message.text.split("\n")[0].endswith(": done")
        web = sim.get("/apis/apps/v1/namespaces/shop-staging/deployments/shop-web")
        assert web is not None and web["spec"]["replicas"] == 3
        served.stop()
    output = served.log.read_text(errors="replace")
    assert APP_TOKEN not in output and BOT_TOKEN not in output
