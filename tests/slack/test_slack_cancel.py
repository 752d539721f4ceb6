"""`cancel <execution-id>` of a running execution from Slack, through the real server: the
running step ends (a `wait` ends early), the runbook's on_failure steps run, the message says
who cancelled it, and the audit log has the request."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from bot.config import Settings, load_settings
from bot.services import Services
from simcluster import SimCluster
from tests.slack.conftest import slack_environ
from tests.support.slack_standin import SlackDriver, SlackStandIn

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"
SOAK = {
    "name": "soak",
    "description": "Watch an app for a while before the next step",
    "mutating": True,
    "parameters": {"app": {"type": "app"}},
    "command": {"verb": "soak", "args": ["app"]},
    "steps": [
        {"name": "Soak", "handler": "wait", "with": {"duration": "30m"}},
        {"name": "Restart", "handler": "k8s.restart"},
    ],
    "on_failure": [{"name": "Tell", "handler": "notify",
                    "with": {"channel": "#platform", "text": "soak of {{ params.app }} ended"}}],
}


@pytest.fixture
def settings(sim: SimCluster, slack: SlackStandIn, tmp_path: Path) -> Settings:
    runbooks = tmp_path / "runbooks"
    runbooks.mkdir()
    (runbooks / "soak.yaml").write_text(yaml.safe_dump(SOAK))
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["runbook_dirs"] = [str(runbooks)]
    raw["roles"]["deployer"]["runbooks"].append("soak")
    config = tmp_path / "opsbot.yaml"
    config.write_text(yaml.safe_dump(raw))
    return load_settings(config, environ=slack_environ(sim, slack, tmp_path))


def test_cancel_stops_a_running_execution(bot: SlackDriver, slack: SlackStandIn,
                                          services: Services, sim: SimCluster) -> None:
    web = "/apis/apps/v1/namespaces/shop-staging/deployments/shop-web"
    before = json.dumps(sim.get(web)["spec"])  # type: ignore[index]
    assert bot.send_command("alice", "soak shop-web").status_code == 200
    deadline = time.monotonic() + 30
    running = []
    while not running and time.monotonic() < deadline:
        running = [r for r in services.store.recent_executions(5) if r.status == "running"]
        time.sleep(0.05)
    [record] = running

    assert bot.send_command("mallory", f"cancel {record.id}").status_code == 200
    bot.ephemeral("mallory", lambda t: "mallory may not cancel `soak shop-web`" in t)

    assert bot.send_command("alice", f"cancel {record.id}").status_code == 200
    done = bot.finished("soak shop-web", timeout=30)
    assert ": cancelled" in done.text.split("\n")[0]
    assert "cancelled by alice" in done.text
    assert slack.wait_message(lambda m: m.channel == "#platform").text.startswith(
        "soak of shop-web ended")  # the on_failure step ran
    stored = services.store.get_execution(record.id)
    assert stored is not None and stored.status == "cancelled"
    assert stored.cancel_requested_by == "U0ALICE"
    assert json.dumps(sim.get(web)["spec"]) == before  # the restart never ran  # type: ignore[index]
    outcomes = [(r["outcome"], r["actor"]) for r in services.store.export_audit()
                if r["execution_id"] == record.id]
    assert ("cancel-requested", "U0ALICE") in outcomes
    assert outcomes[-1][0] == "cancelled"
    assert not [o for o in outcomes if o[1] == "U0MALLORY" and o[0] == "cancel-requested"]
