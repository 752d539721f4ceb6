"""Synthetic app traffic, so a real Prometheus can scrape the simulated cluster and deploys can
be verified against it: every ready pod of a Deployment, StatefulSet or Rollout serves a steady
rate of requests whose error ratio and latency come from the image it runs.

`GET /_sim/metrics` serves, per workload (labels `app`, `namespace`):
`http_requests_total{code="200"|"500"}` and the histogram `http_request_duration_seconds`.
Counters advance over real time on every controller pass and every scrape, so they are
monotonic and a change of pods shows up within one tick.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .resources import ResourceRegistry
from .store import Store

JSON = dict[str, Any]
RPS_PER_POD = 50.0
DEFAULT_ERROR_RATIO = 0.001
DEFAULT_P99_SECONDS = 0.08
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SERVING_KINDS = {("apps", "Deployment"), ("apps", "StatefulSet"), ("argoproj.io", "Rollout")}
_LN_100 = math.log(100)


@dataclass(frozen=True)
class Profile:
    """How a pod answers: the share of 500s, and the latency 99% of requests stay under."""

    error_ratio: float = DEFAULT_ERROR_RATIO
    p99_seconds: float = DEFAULT_P99_SECONDS

    def __post_init__(self) -> None:
        if not 0.0 <= self.error_ratio <= 1.0:
            raise ValueError(f"error_ratio must be between 0 and 1, got {self.error_ratio}")
        if not self.p99_seconds > 0.0:
            raise ValueError(f"p99_seconds must be positive, got {self.p99_seconds}")

    def within(self, seconds: float) -> float:
        """Share of requests answered within `seconds`. Latency is exponential with its 99th
        percentile at p99_seconds, so histogram_quantile(0.99, ...) lands near it."""
        return 1.0 - math.exp(-_LN_100 * seconds / self.p99_seconds)

    @property
    def mean_seconds(self) -> float:
        return self.p99_seconds / _LN_100


class TrafficScripts:
    """Profiles by image substring; the latest script matching an image wins. Thread-safe."""

    def __init__(self) -> None:
        self._scripts: dict[str, Profile] = {}
        self._lock = threading.Lock()

    def add(self, image_substring: str, profile: Profile) -> None:
        with self._lock:
            self._scripts.pop(image_substring, None)  # re-scripting makes it the latest
            self._scripts[image_substring] = profile

    def profile_for(self, images: Iterable[str]) -> Profile:
        with self._lock:
            scripts = list(self._scripts.items())
        for image in images:
            for substring, profile in reversed(scripts):
                if substring in image:
                    return profile
        return Profile()

    def items(self) -> tuple[tuple[str, Profile], ...]:
        with self._lock:
            return tuple(self._scripts.items())

    def clear(self) -> None:
        with self._lock:
            self._scripts.clear()


@dataclass
class _Series:
    """One workload's counters, as floats; exposed rounded down, which keeps them monotonic."""

    ok: float = 0.0
    errors: float = 0.0
    buckets: list[float] = field(default_factory=lambda: [0.0] * len(BUCKETS))
    count: float = 0.0
    sum: float = 0.0

    def serve(self, requests: float, profile: Profile) -> None:
        failed = requests * profile.error_ratio
        self.errors += failed
        self.ok += requests - failed
        for i, le in enumerate(BUCKETS):
            self.buckets[i] += requests * profile.within(le)
        self.count += requests
        self.sum += requests * profile.mean_seconds


class Traffic:
    """The counters of every workload that has had ready pods, advanced from elapsed time."""

    def __init__(self, store: Store, types: ResourceRegistry, *,
                 rps_per_pod: float = RPS_PER_POD,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store, self.types = store, types
        self.scripts = TrafficScripts()
        self.rps_per_pod = rps_per_pod
        self.clock = clock
        self._series: dict[tuple[str, str], _Series] = {}
        self._last = clock()
        self._lock = threading.Lock()

    def advance(self) -> None:
        """Credit each ready pod with the requests it served since the last advance."""
        serving = self._serving()  # takes the store lock; never held with ours
        with self._lock:
            now = self.clock()
            elapsed, self._last = max(0.0, now - self._last), now
            for key, profiles in serving.items():
                series = self._series.get(key)
                if series is None:  # an app's counters start at zero, as a process's do
                    self._series[key] = _Series()
                    continue
                for profile in profiles:
                    series.serve(self.rps_per_pod * elapsed, profile)

    def exposition(self) -> str:
        """The Prometheus text format (0.0.4) of every workload's counters, as of now."""
        self.advance()
        with self._lock:
            series = sorted(((key, _Series(s.ok, s.errors, list(s.buckets), s.count, s.sum))
                             for key, s in self._series.items()), key=lambda item: item[0])
        lines = [
            "# HELP http_requests_total Requests served, by status code (simulated).",
            "# TYPE http_requests_total counter",
        ]
        for (namespace, app), s in series:
            base = f'app="{_escape(app)}",namespace="{_escape(namespace)}"'
            lines.append(f'http_requests_total{{{base},code="200"}} {math.floor(s.ok)}')
            lines.append(f'http_requests_total{{{base},code="500"}} {math.floor(s.errors)}')
        lines += [
            "# HELP http_request_duration_seconds Request latency (simulated).",
            "# TYPE http_request_duration_seconds histogram",
        ]
        for (namespace, app), s in series:
            base = f'app="{_escape(app)}",namespace="{_escape(namespace)}"'
            name = "http_request_duration_seconds"
            count = math.floor(s.count)
            for le, value in zip(BUCKETS, s.buckets, strict=True):
                lines.append(f'{name}_bucket{{{base},le="{le!r}"}} {min(count, math.floor(value))}')
            lines.append(f'{name}_bucket{{{base},le="+Inf"}} {count}')
            lines.append(f"{name}_sum{{{base}}} {s.sum!r}")
            lines.append(f"{name}_count{{{base}}} {count}")
        return "\n".join(lines) + "\n"

    def _serving(self) -> dict[tuple[str, str], list[Profile]]:
        """(namespace, app) -> the profile of each ready pod of that workload."""
        pod_type = self.types.by_kind("", "Pod")
        if pod_type is None:
            return {}
        serving: dict[tuple[str, str], list[Profile]] = {}
        with self.store.lock:
            for pod in self.store.list(pod_type, None, _ready):
                workload = self._workload(pod)
                if workload is None:
                    continue
                images = [c.get("image", "") for c in pod["spec"].get("containers") or []]
                serving.setdefault(workload, []).append(self.scripts.profile_for(images))
        return serving

    def _workload(self, pod: JSON) -> tuple[str, str] | None:
        """(namespace, app label or name) of the Deployment, StatefulSet or Rollout that owns
        the pod, directly or through a ReplicaSet."""
        namespace = pod["metadata"].get("namespace", "")
        current = pod
        for _ in range(2):
            ref = next((r for r in current["metadata"].get("ownerReferences") or []
                        if r.get("controller")), None)
            if ref is None:
                return None
            group = str(ref.get("apiVersion", "")).rpartition("/")[0]
            rtype = self.types.by_kind(group, ref.get("kind", ""))
            owner = self.store.get(rtype, namespace, ref["name"]) if rtype else None
            if owner is None:
                return None
            if (group, ref.get("kind")) in SERVING_KINDS:
                return namespace, _app_label(owner)
            current = owner
        return None


def _ready(pod: JSON) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or [])


def _app_label(workload: JSON) -> str:
    labels = workload["metadata"].get("labels") or {}
    template = (((workload.get("spec") or {}).get("template") or {}).get("metadata") or {})
    return str(labels.get("app") or (template.get("labels") or {}).get("app")
               or workload["metadata"]["name"])


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
