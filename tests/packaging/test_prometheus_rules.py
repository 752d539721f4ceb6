"""opsbot's own alerts, as the chart renders them, checked by Prometheus' own `promtool`: the
rules parse, and the Kubernetes API errors alert fires on refusals but not on the NotFound and
Conflict answers that ordinary runbooks get."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.packaging.chart import NAMESPACE, RELEASE, Render
from tests.packaging.tools import run

SELECTOR = f'job="{RELEASE}",namespace="{NAMESPACE}"'


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        message = "promtool is not installed (Debian: apt-get install prometheus)"
        if os.environ.get("OPSBOT_REQUIRE_REAL") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture
def rules_file(renders: dict[str, Render], tmp_path: Path) -> Path:
    rule = renders["postgresql-ha"].one("PrometheusRule")
    path = tmp_path / "opsbot-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    return path


def test_promtool_accepts_the_rules(promtool: str, rules_file: Path) -> None:
    done = run([promtool, "check", "rules", str(rules_file)])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_has_a_runbook_in_the_operations_guide(rules_file: Path) -> None:
    from tests.packaging.tools import ROOT

    guide = (ROOT / "docs" / "operations.md").read_text()
    alerts = [r["alert"] for g in yaml.safe_load(rules_file.read_text())["groups"]
              for r in g["rules"]]
    assert alerts
    missing = [a for a in alerts if f"### {a}" not in guide]
    assert not missing, f"docs/operations.md has no runbook for {missing}"


def _series(reason: str, status: str, per_minute: int) -> dict[str, Any]:
    labels = f'{{{SELECTOR},reason="{reason}",status="{status}"}}'
    return {"series": f"opsbot_kubernetes_api_errors_total{labels}",
            "values": f"0+{per_minute}x40"}


def test_the_kubernetes_api_errors_alert_fires_on_refusals_only(
        promtool: str, rules_file: Path, tmp_path: Path) -> None:
    firing = [{"exp_labels": {"severity": "warning"},
               "exp_annotations": None}]
    tests = {
        "rule_files": [str(rules_file)],
        "evaluation_interval": "1m",
        "tests": [
            {   # NotFound and Conflict are answers, not failures: no alert however many.
                "interval": "1m",
                "input_series": [_series("NotFound", "404", 10), _series("Conflict", "409", 10)],
                "alert_rule_test": [{"eval_time": "30m", "alertname": "OpsbotKubernetesAPIErrors",
                                     "exp_alerts": []}],
            },
            {   # RBAC refusals: one a minute is well over 5 in 15 minutes.
                "interval": "1m",
                "input_series": [_series("Forbidden", "403", 1)],
                "alert_rule_test": [{"eval_time": "30m", "alertname": "OpsbotKubernetesAPIErrors",
                                     "exp_alerts": firing}],
            },
            {   # No answer at all (status 0).
                "interval": "1m",
                "input_series": [_series("Unreachable", "0", 1)],
                "alert_rule_test": [{"eval_time": "30m", "alertname": "OpsbotKubernetesAPIErrors",
                                     "exp_alerts": firing}],
            },
        ],
    }
    # promtool compares annotations exactly; take the rendered ones.
    rules = yaml.safe_load(rules_file.read_text())["groups"][0]["rules"]
    [rule] = [r for r in rules if r.get("alert") == "OpsbotKubernetesAPIErrors"]
    for case in tests["tests"]:  # type: ignore[attr-defined]
        for check in case["alert_rule_test"]:
            for alert in check["exp_alerts"]:
                alert["exp_annotations"] = rule["annotations"]
    path = tmp_path / "tests.yaml"
    path.write_text(yaml.safe_dump(tests))
    done = run([promtool, "test", "rules", str(path)])
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_commands_queued_alert_fires_on_a_queue_that_stays(
        promtool: str, rules_file: Path, tmp_path: Path) -> None:
    rules = yaml.safe_load(rules_file.read_text())["groups"][0]["rules"]
    [rule] = [r for r in rules if r.get("alert") == "OpsbotCommandsQueued"]
    waiting = f"opsbot_triggers_waiting{{{SELECTOR},pod=\"opsbot-0\"}}"
    tests = {
        "rule_files": [str(rules_file)],
        "evaluation_interval": "1m",
        "tests": [
            {   # A burst's queue that drains within minutes: no alert.
                "interval": "1m",
                "input_series": [{"series": waiting, "values": "0 40 30 20 10 0x30"}],
                "alert_rule_test": [{"eval_time": "20m", "alertname": "OpsbotCommandsQueued",
                                     "exp_alerts": []}],
            },
            {   # A queue that stays.
                "interval": "1m",
                "input_series": [{"series": waiting, "values": "0 5x30"}],
                "alert_rule_test": [{"eval_time": "20m", "alertname": "OpsbotCommandsQueued",
                                     "exp_alerts": [{"exp_labels": {"severity": "warning"},
                                                     "exp_annotations": rule["annotations"]}]}],
            },
        ],
    }
    path = tmp_path / "tests.yaml"
    path.write_text(yaml.safe_dump(tests))
    done = run([promtool, "test", "rules", str(path)])
    assert done.returncode == 0, done.stdout + done.stderr
