"""The platform's metrics for the real Prometheus: kubelet volume stats, ingress-nginx request
counters, and scrape targets that are up or down.

`PlatformExporter` serves, on one 127.0.0.1 port,
- `/metrics`: `kubelet_volume_stats_{used,capacity,available}_bytes{namespace,
  persistentvolumeclaim}` (gauges; used bytes grow at the rate a test sets) and
  `nginx_ingress_controller_requests{namespace,ingress,service,status,...}` (a counter that
  advances at the rate and 5xx share a test sets);
- `/probe/<n>`: one scrape target per `add_target()`: 200 and no samples while it is up, 503
  while it is down, so Prometheus' own `up` series (with the target's job, namespace, service,
  instance and pod labels) says which targets are down, as it does for real ones.

`PlatformPrometheus` runs the Debian `prometheus` scraping it every second: job `platform`
(with `honor_labels`, so the series keep their `namespace`) and, through file-based service
discovery that the exporter rewrites, one target per `add_target()`. It is
`tests/support/prometheus.py`'s PrometheusServer with these scrape jobs instead of the
traffic exporter's.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from tests.support.prometheus import (
    PROMETHEUS_BIN,
    PrometheusServer,
    _Process,
    require_binary,
    serving,
)

__all__ = ["Ingress", "PlatformExporter", "PlatformPrometheus", "Target", "Volume",
           "running_platform_prometheus"]

NGINX = "nginx_ingress_controller_requests"


@dataclass
class Volume:
    capacity: float
    used: float
    growth: float = 0.0  # bytes per second


@dataclass
class Ingress:
    """One (ingress, service) pair's traffic: requests per second and the share of 5xx."""

    rps: float = 50.0
    error_ratio: float = 0.0
    error_status: str = "503"
    counts: dict[str, float] = field(default_factory=lambda: {"200": 0.0})


@dataclass
class Target:
    job: str
    namespace: str
    instance: str
    service: str | None = None
    pod: str | None = None
    up: bool = True


class _Nginx(Collector):
    """ingress-nginx's request counter, named as ingress-nginx names it (prometheus_client
    would add `_total` to a Counter, so the samples are written here, untyped)."""

    def __init__(self, exporter: PlatformExporter) -> None:
        self.exporter = exporter

    def collect(self) -> Iterator[Metric]:
        metric = Metric(NGINX, "The total number of client requests", "unknown")
        with self.exporter.lock:
            for (namespace, ingress, service), traffic in self.exporter.ingresses.items():
                for status, count in traffic.counts.items():
                    metric.add_sample(NGINX, {
                        "namespace": namespace, "ingress": ingress, "service": service,
                        "status": status, "method": "GET", "path": "/", "canary": "",
                        "controller_class": "k8s.io/ingress-nginx",
                        "controller_namespace": "ingress-nginx",
                        "controller_pod": "ingress-nginx-controller-7d9c7d8d6-x2x4k",
                    }, float(int(count)))
        yield metric


class PlatformExporter:
    def __init__(self, targets_dir: Path, tick: float = 0.1) -> None:
        self.tick = tick
        self.targets_dir = targets_dir
        self.lock = threading.Lock()
        self.registry = CollectorRegistry()
        labels = ["namespace", "persistentvolumeclaim"]
        self.used = Gauge("kubelet_volume_stats_used_bytes", "Used bytes in the volume.", labels,
                          registry=self.registry)
        self.capacity = Gauge("kubelet_volume_stats_capacity_bytes", "Capacity in bytes.",
                              labels, registry=self.registry)
        self.available = Gauge("kubelet_volume_stats_available_bytes", "Available bytes.",
                               labels, registry=self.registry)
        self.registry.register(_Nginx(self))
        self.volumes: dict[tuple[str, str], Volume] = {}
        self.ingresses: dict[tuple[str, str, str], Ingress] = {}
        self.targets: list[Target] = []
        self._server: ThreadingHTTPServer | None = None
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._run, daemon=True, name="platform-exporter")
        self.port = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> PlatformExporter:
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = exporter._answer(self.path)
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, daemon=True,
                         name="platform-exporter-http").start()
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        self._write_targets()
        self._ticker.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._ticker.join(5)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # What a test shapes ---------------------------------------------------------------------

    def set_volume(self, namespace: str, pvc: str, *, capacity: float, used: float,
                   growth: float = 0.0) -> None:
        """A claim's volume: `used` of `capacity` bytes, growing by `growth` bytes a second."""
        with self.lock:
            self.volumes[(namespace, pvc)] = Volume(capacity, used, growth)
            self._export_volumes()

    def set_ingress(self, namespace: str, ingress: str, service: str, *, rps: float = 50.0,
                    error_ratio: float = 0.0, error_status: str = "503") -> None:
        with self.lock:
            key = (namespace, ingress, service)
            traffic = self.ingresses.setdefault(key, Ingress())
            traffic.rps, traffic.error_ratio, traffic.error_status = rps, error_ratio, error_status
            traffic.counts.setdefault(error_status, 0.0)

    def add_target(self, job: str, namespace: str, instance: str, *, service: str | None = None,
                   pod: str | None = None, up: bool = True) -> Target:
        with self.lock:
            target = Target(job, namespace, instance, service, pod, up)
            self.targets.append(target)
            self._write_targets()
        return target

    def set_up(self, instance: str, up: bool) -> None:
        with self.lock:
            for target in self.targets:
                if target.instance == instance:
                    target.up = up

    # Serving ----------------------------------------------------------------------------------

    def _answer(self, path: str) -> tuple[int, bytes]:
        if path == "/metrics":
            return 200, generate_latest(self.registry)
        if path.startswith("/probe/"):
            with self.lock:
                try:
                    target = self.targets[int(path.removeprefix("/probe/"))]
                except (ValueError, IndexError):
                    return 404, b"no such target\n"
                return (200, b"") if target.up else (503, b"down\n")
        return 404, b"not found\n"

    def _write_targets(self) -> None:
        groups = []
        for index, target in enumerate(self.targets):
            labels = {"__metrics_path__": f"/probe/{index}", "job": target.job,
                      "namespace": target.namespace, "instance": target.instance}
            if target.service:
                labels["service"] = target.service
            if target.pod:
                labels["pod"] = target.pod
            groups.append({"targets": [self.target], "labels": labels})
        temp = self.targets_dir / ".targets.json.tmp"
        temp.write_text(json.dumps(groups))
        temp.replace(self.targets_dir / "targets.json")  # one atomic change for file SD

    def _export_volumes(self) -> None:
        for (namespace, pvc), volume in self.volumes.items():
            used = min(volume.used, volume.capacity)
            self.used.labels(namespace, pvc).set(used)
            self.capacity.labels(namespace, pvc).set(volume.capacity)
            self.available.labels(namespace, pvc).set(volume.capacity - used)

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            with self.lock:
                for volume in self.volumes.values():
                    volume.used = min(volume.capacity, volume.used + volume.growth * self.tick)
                self._export_volumes()
                for traffic in self.ingresses.values():
                    n = traffic.rps * self.tick
                    traffic.counts["200"] = traffic.counts.get("200", 0.0) + n * (
                        1 - traffic.error_ratio)
                    status = traffic.error_status
                    traffic.counts[status] = traffic.counts.get(status, 0.0) + (
                        n * traffic.error_ratio)


class PlatformPrometheus(PrometheusServer):
    """The real Prometheus scraping a PlatformExporter every second, and the probe targets it
    writes for file-based discovery (so a target can really be down)."""

    name = "prometheus-platform"
    ready_query = 'up{job="platform"}'

    def __init__(self, binary: str, workdir: Path, exporter: PlatformExporter) -> None:
        _Process.__init__(self, binary, workdir)
        self.platform = exporter
        self.started = 0.0

    def scrape_configs(self) -> list[dict[str, Any]]:
        return [
            {"job_name": "platform", "honor_labels": True,
             "static_configs": [{"targets": [self.platform.target]}]},
            {"job_name": "probes",
             "file_sd_configs": [{"files": [str(self.platform.targets_dir / "*.json")],
                                  "refresh_interval": "1s"}]},
        ]


def running_platform_prometheus(workdir: Path) -> Iterator[PlatformPrometheus]:
    """The real Prometheus over a started PlatformExporter in `workdir`, for a fixture to
    yield from; both stop after it (skips, or fails under OPSBOT_REQUIRE_REAL, without the
    binary)."""
    binary = require_binary(PROMETHEUS_BIN, "prometheus")
    exporter = PlatformExporter(workdir / "targets").start()
    yield from serving(PlatformPrometheus(binary, workdir / "server", exporter), exporter)
