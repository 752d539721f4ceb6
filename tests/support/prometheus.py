"""Real Prometheus and Alertmanager for tests, started from the Debian binaries on 127.0.0.1.

`TrafficExporter` plays the app: an HTTP endpoint in the test process serving
`http_requests_total{app,namespace,code}` and `http_request_duration_seconds` whose error ratio
and latency the test sets; a ticker thread advances them. `PrometheusServer` scrapes it every
second; `AlertmanagerServer` takes alerts pushed with `POST /api/v2/alerts`.

When a binary is missing the test is skipped (`pytest.fail` with OPSBOT_REQUIRE_REAL=1, as CI
sets it). The pytest fixtures over these classes are in `tests/support/fixtures_prometheus.py`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

__all__ = [
    "ALERTMANAGER_BIN",
    "PROMETHEUS_BIN",
    "SCRAPE_SECONDS",
    "WINDOW",
    "AlertmanagerServer",
    "ContainerSeries",
    "PrometheusServer",
    "Traffic",
    "TrafficExporter",
    "error_ratio_query",
    "p99_query",
    "require_binary",
    "serving",
]

PROMETHEUS_BIN = "prometheus"
ALERTMANAGER_BIN = "prometheus-alertmanager"
SCRAPE_SECONDS = 1.0
WINDOW = "5s"  # rate() window for test queries: a few scrapes, so a change shows quickly
WINDOW_SECONDS = 5.0
STARTUP_TIMEOUT = 30.0
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)


def require_binary(name: str, package: str) -> str:
    """The binary's path; skip the test when it is missing (fail when real parts are required)."""
    path = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/sbin:/usr/local/bin")
    if path:
        return path
    message = f"{name} not installed: apt-get install {package}"
    if os.environ.get("OPSBOT_REQUIRE_REAL") == "1":
        pytest.fail(message)
    pytest.skip(message)


def error_ratio_query(window: str = WINDOW) -> str:
    """The PromQL (a Jinja2 template over app and namespace) for the share of 5xx responses."""
    sel = 'app="{{ app }}",namespace="{{ namespace }}"'
    return (
        f'sum(rate(http_requests_total{{{sel},code=~"5.."}}[{window}])) / '
        f"sum(rate(http_requests_total{{{sel}}}[{window}]))"
    )


def p99_query(window: str = WINDOW) -> str:
    """The PromQL template for the 99th percentile latency in seconds."""
    sel = 'app="{{ app }}",namespace="{{ namespace }}"'
    return (
        "histogram_quantile(0.99, sum by (le) "
        f"(rate(http_request_duration_seconds_bucket{{{sel}}}[{window}])))"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# The app under test ---------------------------------------------------------------------------


@dataclass
class Traffic:
    """What one app's endpoint serves: requests per second, share of 500s, latency."""

    rps: float = 100.0
    error_ratio: float = 0.0
    p99_seconds: float = 0.05
    changed: float = 0.0  # monotonic time of the last change; 0: as it has been from the start


class TrafficExporter:
    """Serves request counters and a latency histogram per (app, namespace), advancing them.

    Every request of a tick is observed at `p99_seconds`, so histogram_quantile(0.99) returns
    (about) the upper bound of the bucket holding that value.
    """

    def __init__(self, tick: float = 0.1) -> None:
        self.tick = tick
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests", "Requests served.", ["app", "namespace", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds", "Request latency.", ["app", "namespace"],
            buckets=BUCKETS, registry=self.registry,
        )
        self._traffic: dict[tuple[str, str], Traffic] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server: Any = None
        self._ticker = threading.Thread(target=self._run, daemon=True, name="traffic-exporter")
        self.port = 0
        self.set()  # shop-api in shop-staging, healthy

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> TrafficExporter:
        self._server, _ = start_http_server(0, addr="127.0.0.1", registry=self.registry)
        self.port = int(self._server.server_port)
        self._ticker.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._ticker.join(5)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def set(
        self,
        *,
        app: str = "shop-api",
        namespace: str = "shop-staging",
        error_ratio: float | None = None,
        p99_seconds: float | None = None,
        rps: float | None = None,
    ) -> Traffic:
        """Start an app's traffic, or change it; unnamed values keep their current setting.

        Setting what is already set changes nothing (and needs no settling)."""
        with self._lock:
            key = (app, namespace)
            current = self._traffic.get(key)
            new = current is None
            if current is None:
                current = self._traffic[key] = Traffic()
                # Both codes exist from the start, so the error ratio is 0 rather than empty.
                for code in ("200", "500"):
                    self.requests.labels(app, namespace, code)
                self.latency.labels(app, namespace)
            before = (current.error_ratio, current.p99_seconds, current.rps)
            if error_ratio is not None:
                current.error_ratio = error_ratio
            if p99_seconds is not None:
                current.p99_seconds = p99_seconds
            if rps is not None:
                current.rps = rps
            if not new and before != (current.error_ratio, current.p99_seconds, current.rps):
                current.changed = time.monotonic()
            return current

    def traffic(self, app: str = "shop-api", namespace: str = "shop-staging") -> Traffic:
        with self._lock:
            return self._traffic[(app, namespace)]

    def set_container(
        self,
        *,
        namespace: str,
        pod: str,
        container: str,
        working_set_bytes: float | None = None,
        throttled_ratio: float | None = None,
        periods_per_second: float | None = None,
    ) -> ContainerSeries:
        """Serve cAdvisor's series for one container, or change them (unnamed values keep
        their setting): `container_memory_working_set_bytes` and the CFS counters
        `container_cpu_cfs_periods_total` / `container_cpu_cfs_throttled_periods_total`, of
        which `throttled_ratio` are throttled. Counters are computed when scraped."""
        collector = self.__dict__.get("_container_collector")
        if collector is None:
            collector = self.__dict__["_container_collector"] = _ContainerCollector()
            self.registry.register(collector)
        return collector.set(namespace, pod, container, working_set_bytes, throttled_ratio,
                             periods_per_second)

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            with self._lock:
                for (app, namespace), t in self._traffic.items():
                    n = t.rps * self.tick
                    self.requests.labels(app, namespace, "200").inc(n * (1 - t.error_ratio))
                    self.requests.labels(app, namespace, "500").inc(n * t.error_ratio)
                    histogram = self.latency.labels(app, namespace)
                    for _ in range(max(1, round(n))):
                        histogram.observe(t.p99_seconds)


@dataclass
class ContainerSeries:
    """One container's cAdvisor numbers; counters grow with time at `periods_per_second`."""

    working_set_bytes: float = 0.0
    throttled_ratio: float = 0.0
    periods_per_second: float = 10.0  # a 100 ms CFS period
    periods: float = 0.0  # counted up to `since`
    throttled: float = 0.0
    since: float = 0.0

    def fold(self, now: float) -> None:
        elapsed = max(0.0, now - self.since)
        self.periods += elapsed * self.periods_per_second
        self.throttled += elapsed * self.periods_per_second * self.throttled_ratio
        self.since = now


class _ContainerCollector:
    """A prometheus_client collector for the container series `set_container` defines."""

    def __init__(self) -> None:
        self._series: dict[tuple[str, str, str], ContainerSeries] = {}
        self._lock = threading.Lock()

    def set(self, namespace: str, pod: str, container: str, working_set_bytes: float | None,
            throttled_ratio: float | None, periods_per_second: float | None) -> ContainerSeries:
        now = time.monotonic()
        with self._lock:
            series = self._series.get((namespace, pod, container))
            if series is None:
                series = self._series[(namespace, pod, container)] = ContainerSeries(since=now)
            series.fold(now)
            if working_set_bytes is not None:
                series.working_set_bytes = working_set_bytes
            if throttled_ratio is not None:
                series.throttled_ratio = throttled_ratio
            if periods_per_second is not None:
                series.periods_per_second = periods_per_second
            return series

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        labels = ["namespace", "pod", "container"]
        memory = GaugeMetricFamily("container_memory_working_set_bytes",
                                   "Current working set of the container in bytes.",
                                   labels=labels)
        periods = CounterMetricFamily("container_cpu_cfs_periods",
                                      "Number of elapsed enforcement period intervals.",
                                      labels=labels)
        throttled = CounterMetricFamily("container_cpu_cfs_throttled_periods",
                                        "Number of throttled period intervals.", labels=labels)
        now = time.monotonic()
        with self._lock:
            for key, series in sorted(self._series.items()):
                series.fold(now)
                memory.add_metric(list(key), series.working_set_bytes)
                periods.add_metric(list(key), series.periods)
                throttled.add_metric(list(key), series.throttled)
        yield from (memory, periods, throttled)


# Processes ------------------------------------------------------------------------------------


class _Process:
    """A server binary on 127.0.0.1:<free port>, its output in a log file, ready on /-/ready."""

    name = "server"

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"{self.name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def args(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for _attempt in range(3):  # another process may take the free port we picked
            self.port = _free_port()
            with self.log_path.open("ab") as log:
                self._proc = subprocess.Popen(
                    [self.binary, *self.args()], stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, cwd=self.workdir,
                )
            if self._wait_ready():
                return
            self.stop()
            if "address already in use" not in self.log():
                break
        raise RuntimeError(f"{self.name} did not become ready; its log:\n{self.log()[-3000:]}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        with httpx.Client(timeout=2.0) as http:
            while time.monotonic() < deadline:
                assert self._proc is not None
                if self._proc.poll() is not None:
                    return False
                try:
                    if http.get(f"{self.url}/-/ready").status_code == 200:
                        return True
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        return False

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
        self._proc = None


class PrometheusServer(_Process):
    """The real Prometheus, scraping `exporter` every second into a temporary TSDB."""

    name = "prometheus"

    def __init__(self, binary: str, workdir: Path, exporter: TrafficExporter) -> None:
        super().__init__(binary, workdir)
        self.exporter = exporter
        self.started = 0.0

    #: What must answer 1 before the server counts as started.
    ready_query = 'up{job="shop"}'

    def scrape_configs(self) -> list[dict[str, Any]]:
        return [{"job_name": "shop", "static_configs": [{"targets": [self.exporter.target]}]}]

    def args(self) -> list[str]:
        config = {
            "global": {"scrape_interval": f"{SCRAPE_SECONDS:g}s", "scrape_timeout": "1s",
                       "evaluation_interval": "1s"},
            "scrape_configs": self.scrape_configs(),
        }
        path = self.workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        return [
            f"--config.file={path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1h",
            "--log.level=warn",
        ]

    def start(self) -> None:
        super().start()
        self.started = time.monotonic()
        self.wait_for(self.ready_query, lambda v: v == 1.0, timeout=STARTUP_TIMEOUT)

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector of `promql`, as Prometheus returns it."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()["data"]["result"]
        return result

    def value(self, promql: str) -> float | None:
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None

    def wait_for(
        self, promql: str, predicate: Callable[[float], bool], timeout: float = 20.0
    ) -> float:
        """Poll `promql` until its value satisfies `predicate`; the value."""
        deadline = time.monotonic() + timeout
        last: float | None = None
        while True:
            last = self.value(promql)
            if last is not None and predicate(last):
                return last
            if time.monotonic() > deadline:
                raise AssertionError(f"{promql} is {last}, not as expected, after {timeout}s")
            time.sleep(0.2)

    def settle(self, app: str = "shop-api", namespace: str = "shop-staging",
               history: float = 0.0) -> None:
        """Wait until rate() windows over the app's series reflect only its current traffic,
        and did `history` seconds ago already.

        A brand-new series needs two scrapes; a changed one needs its whole window to pass.
        """
        traffic = self.exporter.traffic(app, namespace)
        if traffic.changed:
            pause = traffic.changed + WINDOW_SECONDS + SCRAPE_SECONDS + 0.5 - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        offset = f" offset {history:g}s" if history else ""
        self.wait_for(
            f'count_over_time(http_requests_total{{app="{app}",namespace="{namespace}",'
            f'code="200"}}[{WINDOW}]{offset})',
            lambda v: v >= 2,
        )


class _Stops(Protocol):
    def stop(self) -> None: ...


ServerT = TypeVar("ServerT", bound=PrometheusServer)


def serving(server: ServerT, exporter: _Stops) -> Iterator[ServerT]:
    """`server` started over the already started `exporter`, for a fixture to yield from;
    both stop after it, the server first."""
    try:
        server.start()
        yield server
    finally:
        server.stop()
        exporter.stop()


class AlertmanagerServer(_Process):
    """The real Alertmanager, without clustering, routing everything to a receiver that drops it."""

    name = "alertmanager"

    def args(self) -> list[str]:
        config = {
            "route": {"receiver": "null", "group_wait": "1h"},
            "receivers": [{"name": "null"}],
        }
        path = self.workdir / "alertmanager.yml"
        path.write_text(yaml.safe_dump(config))
        return [
            f"--config.file={path}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ]

    def push(
        self,
        labels: dict[str, str],
        annotations: dict[str, str] | None = None,
        *,
        starts_at: datetime | None = None,
        ends_at: datetime | None = None,
    ) -> None:
        """Send one alert as Prometheus would; `ends_at` in the past resolves it."""
        alert: dict[str, Any] = {"labels": labels, "annotations": annotations or {}}
        if starts_at:
            alert["startsAt"] = starts_at.isoformat()
        if ends_at:
            alert["endsAt"] = ends_at.isoformat()
        response = httpx.post(f"{self.url}/api/v2/alerts", json=[alert], timeout=10)
        response.raise_for_status()

    def resolve(self, labels: dict[str, str]) -> None:
        now = datetime.now(UTC)
        self.push(labels, starts_at=now - timedelta(minutes=1), ends_at=now - timedelta(seconds=1))

    def alerts(self) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v2/alerts", timeout=10)
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()
        return result

    def clear(self) -> None:
        """Resolve every active alert, so the next test starts with none firing."""
        for alert in self.alerts():
            self.resolve(alert["labels"])
