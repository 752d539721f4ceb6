"""`analysis.verify` through the dispatcher, against the real Prometheus scraping the test
exporter: passing, failing early, inconclusive, broken queries, dry run, and the graph."""

from __future__ import annotations

import io
import re
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from matplotlib.image import imread

from bot import messages
from bot.config import load_settings
from bot.dispatcher import Outcome
from bot.messages import metric_value
from bot.registry import Registry
from bot.services import Services
from bot.slack.mrkdwn import mrkdwn
from bot.trigger import Trigger
from tests.conftest import DEMO_CONFIG, RecordingReporter
from tests.support.prometheus import PrometheusServer, error_ratio_query, p99_query

pytest_plugins = ["tests.support.fixtures_prometheus"]

METRICS = [
    {"name": "error-ratio", "query": error_ratio_query(), "success": "result < 0.05",
     "unit": "ratio"},
    {"name": "p99-latency", "query": p99_query(), "success": "result < 0.5", "unit": "seconds"},
]
ANALYSIS = {"metrics": METRICS, "interval_seconds": 1, "count": 3}
APPS: dict[str, Any] = {
    "calm-api": {"analysis": ANALYSIS},
    "flaky-api": {"analysis": {**ANALYSIS, "failure_limit": 1}},
    "ghost-api": {"analysis": ANALYSIS},  # the exporter serves nothing for it
    "broken-api": {"analysis": {**ANALYSIS, "metrics": [
        {**METRICS[0], "query": 'sum(rate(http_requests_total{app="{{ app }}"}[5s]'}]}},
    "bare-api": {},
}
RUNBOOK = """
name: verify-test
description: Verify an app against Prometheus.
parameters:
  app: {type: app}
  since: {type: string, default: ""}
  count: {type: int, default: 0}
command: {verb: verify-test, args: [app]}
steps:
  - id: verify
    name: Verify
    handler: analysis.verify
    with:
      since: "{{ params.since or none }}"
      count: "{{ params.count or none }}"
"""
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

Build = Callable[[str | None], Services]
Run = Callable[..., Any]


def closed_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def build(tmp_path: Path) -> Iterator[Build]:
    """Services on the demo world plus the test apps, with PROMETHEUS_URL as given."""
    built: list[Services] = []
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbooks" / "verify-test.yaml").write_text(RUNBOOK)
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["apps"].update(APPS)
    raw["roles"]["tester"] = {"users": ["U0ALICE"], "runbooks": ["*"], "environments": ["*"]}
    raw["runbook_dirs"] = [str(tmp_path / "runbooks")]
    config = tmp_path / "opsbot.yaml"
    config.write_text(yaml.safe_dump(raw))

    def _build(prometheus_url: str | None) -> Services:
        environ = {"OPSBOT_DATABASE_URL": f"sqlite:///{tmp_path / f'db{len(built)}.sqlite'}"}
        if prometheus_url:
            environ["PROMETHEUS_URL"] = prometheus_url
        services = Services.build(load_settings(config, environ=environ),
                                  registry=Registry.builtin())
        built.append(services)
        return services

    yield _build
    for services in built:
        services.close()


@pytest.fixture
def traffic(prometheus: PrometheusServer) -> PrometheusServer:
    prometheus.exporter.set(app="calm-api", error_ratio=0.002, p99_seconds=0.09)
    prometheus.exporter.set(app="flaky-api", error_ratio=0.3, p99_seconds=0.09)
    prometheus.settle(app="calm-api")
    prometheus.settle(app="flaky-api")
    return prometheus


async def run(services: Services, text: str) -> tuple[Outcome, RecordingReporter]:
    rep = RecordingReporter()
    outcome = await services.dispatcher.dispatch(
        Trigger(source="console", actor="U0ALICE", text=text), rep
    )
    return outcome, rep


async def test_low_error_rate_passes_with_a_graph(traffic: PrometheusServer, build: Build) -> None:
    since = (datetime.now(UTC) - timedelta(seconds=20)).strftime("%Y-%m-%dT%H:%M:%SZ")
    outcome, rep = await run(build(traffic.url), f"verify-test calm-api --since {since}")
    assert outcome.status == "succeeded", rep.final.summary
    step = rep.final.steps[0]
    assert step.summary == "analysis passed: 3/3 checks"
    fields = dict(step.fields)
    assert re.fullmatch(r"last 0\.2% · needs result < 0\.05 · 3 met, 0 missed, 0 inconclusive",
                        fields["error-ratio"]), fields
    assert re.fullmatch(r"last \d+(\.\d+)? ms · needs result < 0\.5 · 3 met, 0 missed, "
                        r"0 inconclusive", fields["p99-latency"]), fields
    progress = [v.steps[0].progress for v in rep.views if v.steps[0].progress]
    assert any(re.fullmatch(r"check [123]/3: error-ratio 0\.2% ✓, p99-latency [\d.]+ ms ✓", p)
               for p in progress), progress

    (attachment,) = step.attachments
    assert attachment.filename == "analysis-calm-api-staging.png"
    assert attachment.title == "calm-api in staging: error-ratio, p99-latency"
    assert attachment.mimetype == "image/png"
    assert attachment.content.startswith(PNG_MAGIC) and len(attachment.content) > 20_000
    assert imread(io.BytesIO(attachment.content), format="png").shape[2] in (3, 4)


async def test_high_error_rate_fails_early_naming_metric_and_value(
    traffic: PrometheusServer, build: Build
) -> None:
    outcome, rep = await run(build(traffic.url), "verify-test flaky-api --count 5")
    assert outcome.status == "failed"
    step = rep.final.steps[0]
    # failure_limit 1: the second missed check ends it, three checks before the planned five
    assert step.summary == (
        "analysis failed: error-ratio 30% (needs result < 0.05) in 2 of 2 checks"
    )
    assert rep.final.summary == f"Verify failed: {step.summary}"
    assert dict(step.fields)["error-ratio"].endswith("0 met, 2 missed, 0 inconclusive")
    assert dict(step.fields)["p99-latency"].endswith("2 met, 0 missed, 0 inconclusive")
    assert len(step.attachments) == 1  # the graph shows the failure too


async def test_no_data_is_inconclusive(traffic: PrometheusServer, build: Build) -> None:
    outcome, rep = await run(build(traffic.url), "verify-test ghost-api")
    assert outcome.status == "failed"
    step = rep.final.steps[0]
    assert step.summary == (
        "analysis inconclusive: error-ratio had no value in 2 of 2 checks (at most 1 allowed)"
    )
    assert dict(step.fields)["error-ratio"].startswith("last no data")
    assert step.attachments == ()  # nothing to draw


async def test_bad_promql_stops_with_prometheus_error(
    prometheus: PrometheusServer, build: Build
) -> None:
    outcome, rep = await run(build(prometheus.url), "verify-test broken-api")
    assert outcome.status == "failed"
    summary = rep.final.steps[0].summary
    assert summary.startswith(
        "analysis inconclusive: the error-ratio check cannot run: Prometheus rejected the query: "
    )
    assert "parse error" in summary
    assert dict(rep.final.steps[0].fields)["error-ratio"].endswith("1 inconclusive")


async def test_unreachable_prometheus_is_inconclusive(build: Build) -> None:
    outcome, rep = await run(build(closed_url()), "verify-test calm-api")
    assert outcome.status == "failed"
    assert rep.final.steps[0].summary == (
        "analysis inconclusive: error-ratio had no value in 2 of 2 checks (at most 1 allowed)"
    )


async def test_dry_run_plans_without_querying(build: Build) -> None:
    outcome, rep = await run(build(closed_url()), "verify-test calm-api --dry-run")
    assert outcome.status == "succeeded"
    step = rep.final.steps[0]
    assert step.summary == "would verify 2 metrics over 3 checks, 1 s apart"
    assert dict(step.fields) == {"error-ratio": "needs result < 0.05",
                                 "p99-latency": "needs result < 0.5"}
    assert step.output is not None and 'app="calm-api",namespace="shop-staging"' in step.output


async def test_not_checked_without_prometheus_or_metrics(build: Build) -> None:
    """A check that did not run is shown and stored as not checked, never as passed, and
    says why: analysis is configured but PROMETHEUS_URL is not set, or none is configured."""
    services = build(None)
    outcome, rep = await run(services, "verify-test calm-api")
    assert rep.final.status == "succeeded"  # refusing on it is a policy still to come
    verify = rep.final.steps[0]
    assert (verify.status, verify.summary) == (
        "not_checked", "not checked: PROMETHEUS_URL is not set")
    assert rep.final.summary == "1 not checked: Verify: analysis (PROMETHEUS_URL is not set)"
    assert mrkdwn(messages.execution_headline(rep.final)) == (
        "❔ `verify-test calm-api` in *staging*: done, not checked: Verify")
    record = services.store.get_execution(outcome.execution_id)
    assert record is not None and [s.status for s in record.steps] == ["not_checked"]
    assert record.summary == ("not checked: PROMETHEUS_URL is not set; 1 not checked: "
                              "Verify: analysis (PROMETHEUS_URL is not set)")
    _, rep = await run(build(closed_url()), "verify-test bare-api")
    assert rep.final.steps[0].status == "not_checked"
    assert rep.final.steps[0].summary == (
        "not checked: no analysis configured (no metrics under apps.bare-api.analysis)"
    )


@pytest.mark.parametrize(("value", "unit", "shown"), [
    (0.004, "ratio", "0.4%"),
    (0.213, "ratio", "21.3%"),
    (0.0, "ratio", "0%"),
    (0.12, "seconds", "120 ms"),
    (2.5, "s", "2.5 s"),
    (99.5, "percent", "99.5%"),
    (1234.0, "req/s", "1,234 req/s"),
    (0.5, "", "0.5"),
    (None, "ratio", "no data"),
    (float("nan"), "seconds", "no data"),
])
def test_values_are_shown_in_their_unit(value: float | None, unit: str, shown: str) -> None:
    assert metric_value(value, unit) == shown
