"""`serve` as operators run it: a separate process configured by environment variables, up on
its port, answering a signed command, stopping cleanly on SIGTERM, and never logging secrets."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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


@dataclass
class Served:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        """SIGTERM: uvicorn shuts down gracefully, then re-raises SIGTERM so the exit shows
        the signal."""
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(timeout=30) in (0, -signal.SIGTERM)


@contextmanager
def serve_process(argv: list[str], sim: SimCluster, slack: SlackStandIn, tmp_path: Path,
                  **slack_env: str) -> Iterator[Served]:
    """opsbot serving the demo world in its own process, configured only by environment
    variables (the ones given here, no SLACK_* or OPSBOT_* of the test's), up and healthy;
    killed at the end if a test left it running."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPSBOT_"))}
    env.update(
        OPSBOT_CONFIG=str(ROOT / "examples" / "demo.yaml"),
        KUBECONFIG=sim.write_kubeconfig(str(tmp_path / "kubeconfig")),
        OPSBOT_DATABASE_URL=f"sqlite:///{tmp_path / 'opsbot.db'}",
        OPSBOT_LISTEN=f"127.0.0.1:{port}",
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_API_URL=slack.api_url,
        **slack_env,
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, *argv], env=env, cwd=tmp_path,
                                   stdout=out, stderr=out)
    try:
        served = Served(f"http://127.0.0.1:{port}", process, log)
        wait_healthy(served.url, process)
        yield served
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_serve_process_answers_and_stops_cleanly(
    sim: SimCluster, slack: SlackStandIn, tmp_path: Path
) -> None:
    with serve_process(["-c", SCRIPT], sim, slack, tmp_path,
                       SLACK_SIGNING_SECRET=SIGNING_SECRET) as served:
        with httpx.Client(timeout=30) as http:
            bot = SlackDriver(served.url, http, slack, SIGNING_SECRET)
            assert bot.send_command("alice", "scale shop-web 4").status_code == 200
            message = bot.finished("scale shop-web 4")
        assert message.text.split("\n")[0].endswith(": done")
        served.stop()
    output = served.log.read_text(errors="replace")
    assert "Application startup complete" in output
    assert "Application shutdown complete" in output
    assert BOT_TOKEN not in output and SIGNING_SECRET not in output
