"""pytest fixtures for the real Prometheus (scraping a test exporter) and Alertmanager.

Use them with `pytest_plugins = ["tests.support.fixtures_prometheus"]` in a test module (or the
root conftest). The servers start once per session, on first use:

- `prometheus`: a `PrometheusServer`; `prometheus.url` for PROMETHEUS_URL,
  `prometheus.exporter.set(app=..., error_ratio=..., p99_seconds=...)` to shape an app's
  traffic, then `prometheus.settle(app)` to wait until `[5s]` rate windows show only that.
- `alertmanager`: an `AlertmanagerServer` with no alert active at the start and end of each
  test; `alertmanager.push(labels, annotations)` fires one, `alertmanager.resolve(labels)`
  ends it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.prometheus import (
    ALERTMANAGER_BIN,
    PROMETHEUS_BIN,
    AlertmanagerServer,
    PrometheusServer,
    TrafficExporter,
    require_binary,
    serving,
)

__all__ = ["alertmanager", "alertmanager_server", "prometheus", "prometheus_server"]


@pytest.fixture(scope="session")
def prometheus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    binary = require_binary(PROMETHEUS_BIN, "prometheus")
    exporter = TrafficExporter().start()
    yield from serving(PrometheusServer(binary, tmp_path_factory.mktemp("prometheus"), exporter),
                       exporter)


@pytest.fixture
def prometheus(prometheus_server: PrometheusServer) -> PrometheusServer:
    """The session's Prometheus; each test shapes the traffic of the apps it queries."""
    return prometheus_server


@pytest.fixture(scope="session")
def alertmanager_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AlertmanagerServer]:
    binary = require_binary(ALERTMANAGER_BIN, "prometheus-alertmanager")
    server = AlertmanagerServer(binary, tmp_path_factory.mktemp("alertmanager"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def alertmanager(alertmanager_server: AlertmanagerServer) -> Iterator[AlertmanagerServer]:
    """The session's Alertmanager with no active alert when the test starts and ends."""
    alertmanager_server.clear()
    yield alertmanager_server
    alertmanager_server.clear()
