"""PrometheusClient against the real Prometheus scraping the test exporter."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import pytest
from jinja2 import Template

from bot.errors import PermanentError, RetryableError
from bot.prometheus import PrometheusClient, safe_url
from tests.support.prometheus import PrometheusServer, error_ratio_query, p99_query

pytest_plugins = ["tests.support.fixtures_prometheus"]

APP = "query-api"
NAMESPACE = "shop-staging"


def _query(template: str) -> str:
    return Template(template).render(app=APP, namespace=NAMESPACE)


@pytest.fixture
def prom(prometheus: PrometheusServer) -> PrometheusServer:
    prometheus.exporter.set(app=APP, error_ratio=0.25, p99_seconds=0.09)
    prometheus.settle(app=APP)
    return prometheus


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_instant_query_returns_the_single_value(prom: PrometheusServer) -> None:
    async with PrometheusClient(prom.url) as client:
        ratio = await client.query(_query(error_ratio_query()))
        p99 = await client.query(_query(p99_query()))
    assert ratio == pytest.approx(0.25, abs=0.01)
    assert p99 is not None and 0.075 < p99 <= 0.1  # the bucket holding 0.09


async def test_empty_result_is_none_and_scalars_are_values(prom: PrometheusServer) -> None:
    async with PrometheusClient(prom.url + "/") as client:
        assert await client.query('sum(http_requests_total{app="nobody"})') is None
        assert await client.query("1 + 1") == 2.0


async def test_several_series_are_an_error_naming_the_count(prom: PrometheusServer) -> None:
    async with PrometheusClient(prom.url) as client:
        with pytest.raises(PermanentError, match=r"returned 2 series"):
            await client.query(f'http_requests_total{{app="{APP}"}}')


async def test_bad_promql_is_permanent_with_prometheus_text(prom: PrometheusServer) -> None:
    async with PrometheusClient(prom.url) as client:
        with pytest.raises(PermanentError) as caught:
            await client.query("sum(rate(http_requests_total[5s]")
    text = str(caught.value)
    assert text.startswith("Prometheus rejected the query: ")
    assert "parse error" in text
    assert "b'" not in text  # Prometheus' error text, not the client's bytes repr


async def test_range_query_returns_timestamped_points(prom: PrometheusServer) -> None:
    import asyncio

    async with PrometheusClient(prom.url) as client:
        # Scrapes land a moment after they happen; on a busy machine the newest window may
        # still be empty, so ask again briefly rather than flake.
        for _ in range(20):
            end = datetime.now(UTC)
            points = await client.query_range(
                _query(error_ratio_query()), end - timedelta(seconds=30), end, 1.5
            )
            if points:
                break
            await asyncio.sleep(0.5)
        nothing = await client.query_range(
            'sum(http_requests_total{app="nobody"})', end - timedelta(seconds=30), end, 1
        )
    assert points and nothing == []
    assert all(isinstance(t, datetime) and t.tzinfo is not None for t, _ in points)
    assert points[-1][1] == pytest.approx(0.25, abs=0.01)
    assert points[-1][0] <= end + timedelta(seconds=1)


async def test_unreachable_prometheus_is_retryable_without_credentials() -> None:
    url = f"http://opsbot:s3cret-pass@127.0.0.1:{_closed_port()}"
    async with PrometheusClient(url) as client:
        with pytest.raises(RetryableError) as caught:
            await client.query("up")
    assert "unreachable" in str(caught.value)
    assert "s3cret" not in str(caught.value) and "opsbot:" not in str(caught.value)
    assert "127.0.0.1" in str(caught.value)


def test_safe_url_drops_user_and_password() -> None:
    assert safe_url("https://u:p@prom.example:9090/prometheus?x=1") == (
        "https://prom.example:9090/prometheus"
    )
    assert safe_url("http://prom:9090") == "http://prom:9090"
