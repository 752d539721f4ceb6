"""`serve` as operators run it: a separate process configured by environment variables, up on
its port, answering a signed command, stopping cleanly on SIGTERM, and never logging secrets."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import httpx

from simcluster import SimCluster
from tests.support.signing import SIGNING_SECRET, signed_headers, slash_command_body
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

    def kill_9(self) -> None:
        """SIGKILL: the process dies where it stands, as in a crash or an OOM kill."""
        self.process.kill()
        assert self.process.wait(timeout=30) == -signal.SIGKILL


@contextmanager
def serve_process(argv: list[str], sim: SimCluster, slack: SlackStandIn, tmp_path: Path,
                  **slack_env: str) -> Iterator[Served]:
    """opsbot serving the demo world in its own process, configured only by environment
    variables (the ones given here and in `slack_env`, no SLACK_* or OPSBOT_* of the test's),
    up and healthy;
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
    )
    env.update(slack_env)  # may replace the ones above (another database)
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



@contextmanager
def serving(sim: SimCluster, slack: SlackStandIn, tmp_path: Path,
            ) -> Iterator[tuple[Served, SlackDriver]]:
    """`serve_process` running `serve` with a signing secret (to be killed, or stopped), and a
    driver for it."""
    with serve_process(["-c", SCRIPT], sim, slack, tmp_path,
                       SLACK_SIGNING_SECRET=SIGNING_SECRET) as served, \
            httpx.Client(timeout=30) as http:
        yield served, SlackDriver(served.url, http, slack, SIGNING_SECRET)

def test_serve_process_answers_and_stops_cleanly(
    sim: SimCluster, slack: SlackStandIn, tmp_path: Path
) -> None:
    with serve_process(["-c", SCRIPT], sim, slack, tmp_path,
                       SLACK_SIGNING_SECRET=SIGNING_SECRET) as served:
        with httpx.Client(timeout=30) as http:
            bot = SlackDriver(served.url, http, slack, SIGNING_SECRET)
            assert bot.send_command("alice", "scale shop-web 4").status_code == 200
            message = bot.finished("scale shop-web 4")
            assert http.post(f"{served.url}/slack/events", content=b"x").status_code == 401
        assert message.text.split("\n")[0].endswith(": done")
        served.stop()
    output = served.log.read_text(errors="replace")
    assert "Application startup complete" in output
    assert "Application shutdown complete" in output
    assert BOT_TOKEN not in output and SIGNING_SECRET not in output
    # Each request's access line once, opsbot's (logged once answered), not uvicorn's too.
    line = r'opsbot\.access:127\.0\.0\.1:\d+ - "{} HTTP/1\.1" {}\n'
    assert len(re.findall(line.format("POST /slack/events", 200), output)) == 1
    assert len(re.findall(line.format("POST /slack/events", 401), output)) == 1
    assert re.search(line.format("GET /healthz", 200), output)
    assert "uvicorn.access" not in output


# `opsbot serve` as its console script runs it, with a thread that says when the collector is
# on again after start-up (it is off while `serve` starts, bot/cli.py).
WATCHED = """
import gc, sys, threading, time
def watch():
    while gc.isenabled():  # until `serve` turns it off
        time.sleep(0.001)
    while not gc.isenabled():
        time.sleep(0.01)
    print(f"collector on, frozen {gc.get_freeze_count()}", file=sys.stderr, flush=True)
threading.Thread(target=watch, daemon=True).start()
from bot.cli import main
raise SystemExit(main(["serve"]))
"""


def test_serve_starts_without_the_collector_and_runs_with_it(
    sim: SimCluster, slack: SlackStandIn, tmp_path: Path
) -> None:
    with serve_process(["-c", WATCHED], sim, slack, tmp_path,
                       SLACK_SIGNING_SECRET=SIGNING_SECRET) as served:
        deadline = time.monotonic() + 30
        while "collector on" not in served.log.read_text(errors="replace"):
            assert time.monotonic() < deadline, "the collector was never turned on again"
            time.sleep(0.05)
        served.stop()
    # The watcher's thread and the server's log share stderr: its line may be cut into by
    # another.
    found = re.search(r"collector on, frozen (\d+)", served.log.read_text(errors="replace"))
    assert found is not None
    # On once start-up's objects were frozen, out of the collector's reach.
    assert int(found.group(1)) > 10_000, found.group(0)


MARK = "zq-logged-body-5be1"


def test_no_request_body_reaches_the_log_at_debug(
    sim: SimCluster, slack: SlackStandIn, tmp_path: Path
) -> None:
    """Unsigned, oversized, malformed, unhandled and good requests, each carrying MARK, against
    `serve` logging everything at DEBUG: MARK, the signing secret and the token never appear,
    and each refused request is one line."""
    form = "application/x-www-form-urlencoded"
    command = dict(parse_qsl(slash_command_body("U0ALICE", "status shop-api")))
    marked = urlencode({**command, "user_name": MARK})
    refused = [
        (marked.encode(), signed_headers(marked, "not-the-signing-secret")),
        (marked.encode(), {"Content-Type": form, "X-Slack-Request-Timestamp": "abc",
                           "X-Slack-Signature": "v0=" + MARK}),
        (marked.encode() + b"x" * 2_000_000, {"Content-Type": form}),
        (urlencode({"payload": "[" + json.dumps(MARK)}).encode(), {}),
        (urlencode({**command, "command": "/other", "text": MARK}).encode(), {}),
    ]
    with serve_process(["-c", SCRIPT], sim, slack, tmp_path,
                       SLACK_SIGNING_SECRET=SIGNING_SECRET) as served:
        with httpx.Client(timeout=30) as http:
            for raw, headers in refused:
                sent = headers or signed_headers(raw, SIGNING_SECRET)
                answer = http.post(f"{served.url}/slack/events", content=raw, headers=sent)
                assert 400 <= answer.status_code < 500
            bot = SlackDriver(served.url, http, slack, SIGNING_SECRET)
            assert bot.post(marked, signed_headers(marked, SIGNING_SECRET)).status_code == 200
            message = bot.finished("status shop-api")
            message.text += MARK  # as if the clicked message said it: the click carries it
            assert bot.click("bob", message, "Diagnose").status_code == 200
            bot.finished("diag shop-api --env staging")
        served.stop()
    output = served.log.read_text(errors="replace")
    assert "signed in to Slack as opsbot" in output  # auth.test asked once, at startup
    assert MARK not in output
    assert SIGNING_SECRET not in output and BOT_TOKEN not in output
    lines = [line for line in output.splitlines() if "Slack request refused with" in line]
    assert len(lines) == len(refused)


# `opsbot serve` as its console script runs it, with a thread that says when Bolt is imported.
BOLT_WATCHED = """
import sys, threading, time
def watch():
    while "slack_bolt" not in sys.modules:
        time.sleep(0.005)
    print("bolt imported", file=sys.stderr, flush=True)
threading.Thread(target=watch, daemon=True).start()
from bot.cli import main
raise SystemExit(main(["serve"]))
"""


def test_bolt_is_imported_for_the_first_request_it_handles(
    sim: SimCluster, slack: SlackStandIn, tmp_path: Path
) -> None:
    """Over HTTP the server takes commands and follow-up buttons itself: a replica that
    serves only those never imports Bolt (off the start-up path). The first approval click,
    which Bolt dispatches, imports it and is handled as ever."""
    slack.usergroups["S0APPROVERS"] = ["U0BOB", "U0CAROL"]
    command = "scale shop-api 5 --env prod"
    with serve_process(["-c", BOLT_WATCHED], sim, slack, tmp_path,
                       SLACK_SIGNING_SECRET=SIGNING_SECRET) as served:
        with httpx.Client(timeout=30) as http:
            bot = SlackDriver(served.url, http, slack, SIGNING_SECRET)
            assert http.get(f"{served.url}/readyz").status_code == 200
            assert bot.send_command("alice", "status shop-api").status_code == 200
            bot.finished("status shop-api")
            assert bot.send_command("alice", command).status_code == 200
            request = slack.wait_message(
                lambda m: f"`{command}`" in m.text and "awaiting approval" in m.text)
            assert "bolt imported" not in served.log.read_text(errors="replace")

            assert bot.click("bob", request, "Approve").status_code == 200
            assert bot.finished(command).text.split("\n")[0].endswith(": done")
        deadline = time.monotonic() + 10
        while "bolt imported" not in served.log.read_text(errors="replace"):
            assert time.monotonic() < deadline, "the approval was handled without Bolt?"
            time.sleep(0.05)
        served.stop()
