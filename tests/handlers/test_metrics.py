"""`metrics`, `graph` and the signals `diag` adds, against the real Prometheus scraping the
simulated cluster's traffic (`/_sim/metrics`, as `opsbot demo` runs it); and the Grafana links
that status, metrics, deploys and their verification carry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from bot.config import GrafanaConfig, Settings, load_settings
from bot.console.prometheus_process import PrometheusProcess
from bot.dispatcher import Outcome
from bot.registry import Registry
from bot.services import Services
from tests.conftest import DEMO_CONFIG, RecordingReporter, dispatch
from tests.handlers.conftest import Run
from tests.support.prometheus import PROMETHEUS_BIN, require_binary

PNG = b"\x89PNG\r\n\x1a\n"
GRAFANA = "https://grafana.example/sub"


@pytest.fixture(scope="module")
def sim() -> Iterator[Any]:
    """One simulated cluster for the module: its Prometheus needs a few scrapes of it."""
    from simcluster import SimCluster

    cluster = SimCluster(seed="demo").start(host="127.0.0.1", port=0)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def prometheus(sim: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = require_binary(PROMETHEUS_BIN, "prometheus")
    process = PrometheusProcess(
        binary, tmp_path_factory.mktemp("prometheus"), target=sim.url.split("://", 1)[1],
        metrics_path="/_sim/metrics", bearer_token=sim.token, ca_file=sim.ca_file)
    process.start()
    try:
        process.wait_for_samples(timeout=30)
        _wait(process.url, 'sum(rate(http_requests_total{app="shop-api"}[30s])) > 0')
        yield process.url
    finally:
        process.stop()


def _wait(url: str, promql: str, timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5).json()
        if answer["data"]["result"]:
            return
        time.sleep(0.5)
    raise AssertionError(f"{promql} has no data after {timeout}s")


def _settings(kubeconfig: Path, db_url: str, prometheus: str, grafana: bool = False) -> Settings:
    environ = {"KUBECONFIG": str(kubeconfig), "OPSBOT_DATABASE_URL": db_url,
               "PROMETHEUS_URL": prometheus}
    if grafana:
        environ["GRAFANA_URL"] = GRAFANA
    settings = load_settings(DEMO_CONFIG, environ=environ)
    if grafana:
        assert settings.grafana.url == GRAFANA  # GRAFANA_URL
        settings = settings.model_copy(update={"grafana": GrafanaConfig(
            url=GRAFANA, dashboard="shop-golden", datasource="prom-main")})
    return settings


async def _run(settings: Settings, registry: Registry, text: str, user: str = "alice",
               ) -> tuple[Outcome, RecordingReporter]:
    services = Services.build(settings, registry=registry)
    try:
        return await dispatch(services, text, user)
    finally:
        services.close()


async def test_golden_signals_as_numbers_and_one_graph(
        kubeconfig: Path, db_url: str, registry: Registry, prometheus: str) -> None:
    settings = _settings(kubeconfig, db_url, prometheus)
    outcome, rep = await _run(settings, registry, "metrics shop-api --since 5m")
    assert outcome.status == "succeeded", rep.final.summary
    step = rep.final.steps[0]
    fields = dict(step.fields)
    assert step.summary == "shop-api in staging: 6 of 6 signals have data"
    assert fields["Request rate"].endswith(" req/s")
    assert float(fields["Request rate"].split()[0]) > 0
    assert fields["Error ratio"].endswith("%")
    assert fields["p99 latency"].endswith(" ms")
    # The simulated cluster models cAdvisor's series: 20% of a 100m request against a 500m
    # limit is 4% of the limit once the rate window is full (Prometheus' rate() divides by the
    # whole window, so a series younger than it shows less); the working set is 55% of the
    # memory limit.
    cpu = fields["CPU of limit"]
    assert cpu.endswith("%") and 0 < float(cpu[:-1]) <= 4.0, fields
    assert fields["Memory of limit"] == "55%", fields
    assert fields["Restarts (last 5m)"] == "0"
    assert "Grafana" not in fields  # not configured
    [graph] = step.attachments
    assert graph.content.startswith(PNG)
    assert graph.filename == "metrics-shop-api-staging.png"
    # The PromQL behind each number, label values quoted.
    assert 'http_requests_total{ namespace="shop-staging",app="shop-api" }[30s]' in (
        step.output or "")


async def test_an_app_without_traffic_has_no_data_not_zero(
        kubeconfig: Path, db_url: str, registry: Registry, prometheus: str) -> None:
    outcome, rep = await _run(_settings(kubeconfig, db_url, prometheus), registry,
                              "metrics shop-worker")
    assert outcome.status == "succeeded", rep.final.summary
    fields = dict(rep.final.steps[0].fields)
    assert fields["Error ratio"] == "no data"
    assert fields["p99 latency"] == "no data"


async def test_adhoc_graph_draws_every_series(
        kubeconfig: Path, db_url: str, registry: Registry, prometheus: str) -> None:
    settings = _settings(kubeconfig, db_url, prometheus)
    query = 'sum by (code) (rate(http_requests_total{namespace="shop-staging"}[30s]))'
    outcome, rep = await _run(settings, registry, f"graph '{query}' --since 5m")
    assert outcome.status == "succeeded", rep.final.summary
    step = rep.final.steps[0]
    assert step.summary == "2 series in the last 5m"
    assert [line.split(":")[0] for line in (step.output or "").splitlines()] == [
        '{code="200"}', '{code="500"}']
    [graph] = step.attachments
    assert graph.content.startswith(PNG)


async def test_graph_bounds_the_series_it_draws(
        kubeconfig: Path, db_url: str, registry: Registry, prometheus: str) -> None:
    settings = _settings(kubeconfig, db_url, prometheus)
    outcome, rep = await _run(settings, registry,
                              "graph 'http_request_duration_seconds_bucket' --since 5m")
    assert outcome.status == "succeeded", rep.final.summary
    step = rep.final.steps[0]
    assert step.summary.endswith("series in the last 5m; the first 10 are drawn (aggregate the "
                                 "query to see all of it)")
    assert len((step.output or "").splitlines()) == 10


async def test_graph_is_not_for_viewers_and_bad_promql_fails(
        kubeconfig: Path, db_url: str, registry: Registry, prometheus: str) -> None:
    settings = _settings(kubeconfig, db_url, prometheus)
    outcome, rep = await _run(settings, registry, "graph up", user="mallory")
    assert outcome.status == "denied"
    outcome, rep = await _run(settings, registry, "graph 'sum(('")
    assert outcome.status == "failed"
    assert "Prometheus rejected the query" in rep.final.steps[0].summary


async def test_diag_adds_error_ratio_and_latency(
        kubeconfig: Path, db_url: str, registry: Registry, prometheus: str) -> None:
    outcome, rep = await _run(_settings(kubeconfig, db_url, prometheus), registry,
                              "diag shop-api")
    assert outcome.status == "succeeded", rep.final.summary
    fields = dict(rep.final.steps[0].fields)
    assert fields["Error ratio"].endswith("%")
    assert fields["p99 latency"].endswith(" ms")


async def test_metrics_without_prometheus_is_refused(run: Run) -> None:
    outcome, rep = await run("metrics shop-api")
    assert outcome.status == "refused"
    assert "PROMETHEUS_URL is not set" in rep.final.summary


# Grafana --------------------------------------------------------------------------------------


def _dashboard(url: str) -> dict[str, str]:
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{GRAFANA}/d/shop-golden"
    return {k: v[0] for k, v in parse_qs(parts.query).items()}


async def test_status_and_metrics_link_to_the_apps_dashboard(
        kubeconfig: Path, db_url: str, registry: Registry, prometheus: str) -> None:
    settings = _settings(kubeconfig, db_url, prometheus, grafana=True)
    outcome, rep = await _run(settings, registry, "status shop-api")
    assert outcome.status == "succeeded", rep.final.summary
    query = _dashboard(dict(rep.final.steps[0].fields)["Grafana"])
    assert query["var-namespace"] == "shop-staging" and query["var-app"] == "shop-api"
    assert int(query["to"]) - int(query["from"]) == 3600 * 1000
    outcome, rep = await _run(settings, registry, "metrics shop-api --since 6h")
    assert outcome.status == "succeeded", rep.final.summary
    query = _dashboard(dict(rep.final.steps[0].fields)["Grafana"])
    assert int(query["to"]) - int(query["from"]) == 6 * 3600 * 1000


async def test_a_deploy_links_its_range_and_explore_for_each_check(
        kubeconfig: Path, db_url: str, registry: Registry, prometheus: str) -> None:
    settings = _settings(kubeconfig, db_url, prometheus, grafana=True)
    outcome, rep = await _run(settings, registry, "deploy shop-web 2.2.0")
    assert outcome.status == "succeeded", rep.final.summary
    steps = {step.name: step for step in rep.final.steps}
    rollout = dict(steps["Roll out"].fields)
    query = _dashboard(rollout["Grafana"])
    assert query["var-app"] == "shop-web"
    # From the rollout's start to its end plus grafana.margin_seconds (300 s).
    assert int(query["to"]) - int(query["from"]) >= 300 * 1000
    verify = dict(steps["Verify"].fields)
    explore = urlsplit(verify["error-ratio in Grafana"])
    assert f"{explore.scheme}://{explore.netloc}{explore.path}" == f"{GRAFANA}/explore"
    panes = json.loads(parse_qs(explore.query)["panes"][0])
    [expr] = [q["expr"] for q in panes["a"]["queries"]]
    assert 'app="shop-web"' in expr and "code=~" in expr
    assert panes["a"]["queries"][0]["datasource"] == {"type": "prometheus", "uid": "prom-main"}
    assert "p99-latency in Grafana" in verify
