"""Socket Mode: with an app token, opsbot dials Slack instead of serving /slack/events, acks
envelopes over the socket, and still answers through the Web API and the HTTP probes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import pytest

from bot.services import Services
from bot.simcluster import SimCluster
from bot.slack.server import create_app
from tests.slack.test_slack_serve import ROOT, free_port, wait_healthy
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
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPSBOT_"))}
    env.update(
        OPSBOT_CONFIG=str(ROOT / "examples" / "demo.yaml"),
        KUBECONFIG=sim.write_kubeconfig(str(tmp_path / "kubeconfig")),
        OPSBOT_DATABASE_URL=f"sqlite:///{tmp_path / 'opsbot.db'}",
        OPSBOT_LISTEN=f"127.0.0.1:{port}",
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_APP_TOKEN=APP_TOKEN,
        SLACK_API_URL=slack.api_url,
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve"], env=env,
                                   cwd=tmp_path, stdout=out, stderr=out)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, process)
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
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = log.read_text(errors="replace")
    assert APP_TOKEN not in output and BOT_TOKEN not in output
