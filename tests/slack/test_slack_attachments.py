"""Files a step produced (the analysis graph) are uploaded into the execution's thread through
Slack's external upload flow; a failed upload is logged and counted, never fails the run."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

from bot.config import Settings, load_settings
from simcluster import SimCluster
from tests.slack.conftest import slack_environ
from tests.support.prometheus import PrometheusServer, error_ratio_query
from tests.support.slack_standin import BOT_TOKEN, CHANNEL, SlackDriver, SlackStandIn

pytest_plugins = ["tests.support.fixtures_prometheus"]

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
APP = "slack-api"
COMMAND = f"verify-test {APP}"
RUNBOOK = """
name: verify-test
description: Verify an app against Prometheus.
parameters:
  app: {type: app}
command: {verb: verify-test, args: [app]}
steps:
  - {name: Verify, handler: analysis.verify}
"""


@pytest.fixture
def settings(sim: SimCluster, slack: SlackStandIn, prometheus: PrometheusServer,
             tmp_path: Path) -> Settings:
    prometheus.exporter.set(app=APP, error_ratio=0.01, p99_seconds=0.05)
    prometheus.settle(app=APP)
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbooks" / "verify-test.yaml").write_text(RUNBOOK)
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["apps"][APP] = {"analysis": {"count": 1, "interval_seconds": 1, "metrics": [
        {"name": "error-ratio", "query": error_ratio_query(), "success": "result < 0.05",
         "unit": "ratio"}]}}
    raw["roles"]["tester"] = {"users": ["U0ALICE"], "runbooks": ["*"], "environments": ["*"]}
    raw["runbook_dirs"] = [str(tmp_path / "runbooks")]
    config = tmp_path / "opsbot.yaml"
    config.write_text(yaml.safe_dump(raw))
    return load_settings(config, environ={**slack_environ(sim, slack, tmp_path),
        "PROMETHEUS_URL": prometheus.url})


def test_graph_is_uploaded_into_the_execution_thread(bot: SlackDriver) -> None:
    assert bot.send_command("alice", COMMAND).status_code == 200
    message = bot.finished(COMMAND)
    assert message.text.startswith(f"✅ `{COMMAND}` in *staging*: done")

    upload = bot.slack.wait_upload(lambda u: u.filename == f"analysis-{APP}-staging.png")
    assert (upload.channel, upload.thread_ts) == (CHANNEL, message.ts)
    assert upload.title == f"{APP} in staging: error-ratio"
    assert upload.initial_comment is None
    assert upload.content is not None and upload.content.startswith(PNG_MAGIC)
    assert upload.length == len(upload.content) > 10_000
    asked = bot.slack.calls_to("files.getUploadURLExternal")
    assert len(asked) == 1 and asked[0].auth == f"Bearer {BOT_TOKEN}"


def test_failed_upload_is_counted_and_the_execution_still_done(bot: SlackDriver) -> None:
    def errors() -> float:
        value = REGISTRY.get_sample_value("opsbot_slack_api_errors_total",
                                          {"method": "files.upload_v2"})
        return value or 0.0

    before = errors()
    bot.slack.failing["files.completeUploadExternal"] = "internal_error"
    assert bot.send_command("alice", COMMAND).status_code == 200
    message = bot.finished(COMMAND)
    assert message.text.startswith(f"✅ `{COMMAND}` in *staging*: done")
    bot.slack.wait_for(lambda c: c.method == "files.completeUploadExternal")
    assert not any(u.completed for u in bot.slack.uploads.values())
    deadline = time.monotonic() + 10  # the answer reaches opsbot after the stand-in saw it
    while errors() < before + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert errors() == before + 1
