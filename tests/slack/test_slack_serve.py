"""`serve` as operators run it: a separate process configured by environment variables, up on
its port, answering a signed command, stopping cleanly on SIGTERM, and never logging secrets."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bot.simcluster import SimCluster
from tests.support.signing import SIGNING_SECRET
from tests.support.slack_standin import BOT_TOKEN, SlackDriver, SlackStandIn

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import logging, sys
from bot.config import load_settings
from bot.slack.server import serve
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
serve(load_settings())
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "opsbot serve exited early"
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise TimeoutError(f"{url}/healthz did not answer within {timeout}s")


def test_serve_process_answers_and_stops_cleanly(
    sim: SimCluster, slack: SlackStandIn, tmp_path: Path
) -> None:
    port = free_port()
    env = dict(
        os.environ,
        OPSBOT_CONFIG=str(ROOT / "examples" / "demo.yaml"),
        KUBECONFIG=sim.write_kubeconfig(str(tmp_path / "kubeconfig")),
        OPSBOT_DATABASE_URL=f"sqlite:///{tmp_path / 'opsbot.db'}",
        OPSBOT_LISTEN=f"127.0.0.1:{port}",
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=slack.api_url,
    )
    env.pop("SLACK_APP_TOKEN", None)
    log = tmp_path / "serve.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen([sys.executable, "-c", SCRIPT], env=env, cwd=tmp_path,
                                   stdout=stderr, stderr=stderr)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, process)
        with httpx.Client(timeout=30) as http:
            bot = SlackDriver(url, http, slack, SIGNING_SECRET)
            assert bot.send_command("alice", "scale shop-web 4").status_code == 200
            message = bot.finished("scale shop-web 4")
        assert message.text.split("\n")[0].endswith(": done")
        process.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit shows the signal
        assert process.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = log.read_text(errors="replace")
    assert "Application startup complete" in output
    assert "Application shutdown complete" in output
    assert BOT_TOKEN not in output and SIGNING_SECRET not in output
