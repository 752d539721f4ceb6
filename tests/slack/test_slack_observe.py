"""`logs` and `metrics` from Slack through the real server (signed slash commands, the Slack
stand-in): the newest log lines in the execution's thread, the whole log and the metrics graph
uploaded there as files."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import Settings, load_settings
from simcluster import SimCluster
from tests.support.prometheus import PrometheusServer
from tests.support.signing import SIGNING_SECRET
from tests.support.slack_standin import BOT_TOKEN, CHANNEL, SlackDriver, SlackStandIn

pytest_plugins = ["tests.support.fixtures_prometheus"]

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def settings(sim: SimCluster, slack: SlackStandIn, tmp_path: Path,
             request: pytest.FixtureRequest) -> Settings:
    environ = {
        "KUBECONFIG": sim.write_kubeconfig(str(tmp_path / "kubeconfig")),
        "OPSBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'opsbot.db'}",
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url,
    }
    if "prometheus" in request.fixturenames:
        prometheus: PrometheusServer = request.getfixturevalue("prometheus")
        prometheus.exporter.set()  # shop-api in shop-staging, as the traffic exporter starts
        prometheus.settle()
        environ["PROMETHEUS_URL"] = prometheus.url
    return load_settings(DEMO_CONFIG, environ=environ)


def test_short_logs_in_the_thread(bot: SlackDriver) -> None:
    assert bot.send_command("mallory", "logs shop-worker --previous").status_code == 200
    message = bot.finished("logs shop-worker --previous")
    assert message.text.startswith("✅ `logs shop-worker --previous` in *staging*: done")
    reply = bot.slack.wait_message(lambda m: m.thread_ts == message.ts)
    assert reply.channel == CHANNEL and reply.text.startswith("*Logs* output")
    assert "ERROR worker: out of memory while processing batch 8812" in reply.text
    assert not bot.slack.calls_to("files.getUploadURLExternal")


def test_long_logs_uploaded_as_a_file_into_the_thread(bot: SlackDriver,
                                                      sim: SimCluster) -> None:
    sim.clock.advance(6 * 3600)
    assert bot.send_command("alice", "logs shop-api --since 1d").status_code == 200
    message = bot.finished("logs shop-api --since 1d")
    upload = bot.slack.wait_upload(lambda u: u.filename == "logs-shop-api-staging.txt")
    assert (upload.channel, upload.thread_ts) == (CHANNEL, message.ts)
    assert upload.title == "logs of shop-api in staging (360 lines)"
    assert upload.content is not None and len(upload.content.decode().splitlines()) == 360
    reply = bot.slack.wait_message(lambda m: m.thread_ts == message.ts)
    assert "all of them are in the attached file" in reply.text


def test_metrics_numbers_in_the_message_and_the_graph_in_the_thread(
        bot: SlackDriver, prometheus: PrometheusServer) -> None:
    # The graph's last point falls up to ~2 s before the command: the Prometheus client
    # rounds the range to whole seconds, and the points fall on its step (1.25 s here). A
    # Prometheus started for this test must have had the series that long, or the graph
    # has no point with data and is left out.
    prometheus.settle(history=2.0)
    assert bot.send_command("alice", "metrics shop-api --since 5m").status_code == 200
    message = bot.finished("metrics shop-api --since 5m")
    assert message.text.startswith("✅ `metrics shop-api --since 5m` in *staging*: done")
    shown = str(message.blocks)
    assert "Request rate" in shown and "req/s" in shown
    # This Prometheus scrapes a stand-in exporter of the traffic only: no CPU series.
    assert "CPU of limit" in shown and "no data" in shown
    upload = bot.slack.wait_upload(lambda u: u.filename == "metrics-shop-api-staging.png")
    assert (upload.channel, upload.thread_ts) == (CHANNEL, message.ts)
    assert upload.content is not None and upload.content.startswith(PNG_MAGIC)
