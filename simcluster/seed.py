"""The demo world of CONTRACT.md, built by replaying its history through the REST layer and
the controllers with the clock set back, so revisions, ReplicaSets, pods and timestamps are
exactly what the real controllers would have left behind."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from .behaviours import CrashLoop, Scripts
from .clock import SimClock, fmt_time, parse_time
from .controllers import ControllerManager
from .kubelet import crash_window
from .patches import STRATEGIC
from .resources import ResourceType
from .rest import RestApi
from .routing import Route
from .store import Key
from .traffic import Profile, TrafficScripts

JSON = dict[str, Any]
HOUR = 3600
DAY = 24 * HOUR
REGISTRY = "registry.example.com/shop"
SEEDS = ("demo", "empty")
CACHE_SECONDS = 600.0  # recent enough that crash-loop events are still fresh


def _deployment(namespace: str, app: str, container: str, image: str, replicas: int,
                resources: JSON, env: dict[str, str]) -> JSON:
    labels = {"app": app, "app.kubernetes.io/name": app, "app.kubernetes.io/part-of": "shop"}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": app, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": 600,
            "selector": {"matchLabels": {"app": app}},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {"containers": [{
                    "name": container, "image": image,
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "env": [{"name": k, "value": v} for k, v in env.items()],
                    "resources": resources,
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080},
                                       "periodSeconds": 10},
                }]},
            },
        },
    }


def _service(namespace: str, app: str) -> JSON:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": app, "namespace": namespace, "labels": {"app": app}},
            "spec": {"selector": {"app": app},
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}


def _hpa(namespace: str, app: str, low: int, high: int, cpu_percent: int) -> JSON:
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": app, "namespace": namespace, "labels": {"app": app}},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                        "name": app},
                     "minReplicas": low, "maxReplicas": high,
                     "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                         "type": "Utilization", "averageUtilization": cpu_percent}}}]}}


def _backup_location() -> JSON:
    return {"apiVersion": "velero.io/v1", "kind": "BackupStorageLocation",
            "metadata": {"name": "default", "namespace": "velero"},
            "spec": {"provider": "aws", "default": True, "accessMode": "ReadWrite",
                     "objectStorage": {"bucket": "shop-backups"},
                     "config": {"region": "eu-west-1"}}}


def _revalidate_location(seeder: Seeder) -> None:
    """Velero validates its locations every minute; the seeded one was validated lately."""
    route = Route("velero.io", "v1", "backupstoragelocations", "velero", "default")
    location = seeder.api.get(route)
    location["status"]["lastValidationTime"] = seeder.clock.stamp()
    seeder.api.replace(route, location)


def _resources(cpu: str, memory: str, cpu_limit: str, memory_limit: str) -> JSON:
    return {"requests": {"cpu": cpu, "memory": memory},
            "limits": {"cpu": cpu_limit, "memory": memory_limit}}


class Seeder:
    """Runs timed steps: set the clock, write through the API, let controllers converge."""

    def __init__(self, api: RestApi, manager: ControllerManager, scripts: Scripts,
                 clock: SimClock, traffic: TrafficScripts | None = None) -> None:
        self.api, self.manager, self.scripts, self.clock = api, manager, scripts, clock
        self.traffic = traffic if traffic is not None else TrafficScripts()
        self.steps: list[tuple[float, int, Callable[[], None]]] = []

    def at(self, offset_seconds: float, step: Callable[[], None]) -> None:
        self.steps.append((offset_seconds, len(self.steps), step))

    def run(self) -> None:
        for offset, _, step in sorted(self.steps, key=lambda s: (s[0], s[1])):
            self.clock.set_offset(offset)
            step()
            self.manager.run_until_idle()
        self.clock.set_offset(0)
        self.manager.run_until_idle()

    def create(self, obj: JSON) -> None:
        group, _, version = obj["apiVersion"].rpartition("/")
        rtype = self.api.types.by_kind(group, obj["kind"])
        assert rtype is not None
        namespace = obj["metadata"].get("namespace") if rtype.namespaced else None
        self.api.create(Route(group, version, rtype.plural, namespace), obj)

    def set_image(self, namespace: str, app: str, container: str, image: str) -> None:
        patch = {"spec": {"template": {"spec": {"containers": [
            {"name": container, "image": image}]}}}}
        self.api.patch(Route("apps", "v1", "deployments", namespace, app), patch, STRATEGIC)


def seed_empty(seeder: Seeder) -> None:
    seeder.at(-30 * DAY, partial(seeder.create, {
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}))
    seeder.run()


def seed_demo(seeder: Seeder) -> None:
    for name, age in (("default", 30), ("kube-system", 30), ("shop-staging", 21),
                      ("shop-prod", 21), ("velero", 14)):
        seeder.at(-age * DAY, partial(seeder.create, {
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
    for namespace, lag in (("shop-staging", 0), ("shop-prod", 20 * HOUR)):
        env = namespace.removeprefix("shop-")
        api = _deployment(namespace, "shop-api", "api", f"{REGISTRY}/api:1.2.0", 3,
                          _resources("100m", "128Mi", "500m", "512Mi"),
                          {"LOG_LEVEL": "info", "SHOP_ENV": env})
        web = _deployment(namespace, "shop-web", "web", f"{REGISTRY}/web:2.1.0", 2,
                          _resources("50m", "64Mi", "200m", "128Mi"), {"SHOP_ENV": env})
        seeder.at(-9 * DAY + lag, partial(seeder.create, api))
        seeder.at(-9 * DAY + lag + 60, partial(seeder.create, _service(namespace, "shop-api")))
        # Within the app's configured bounds; no CPU utilization is scripted, so it reports
        # FailedGetResourceMetric and leaves the replicas alone (as without a metrics server).
        seeder.at(-9 * DAY + lag + 120, partial(seeder.create,
                                                _hpa(namespace, "shop-api", 1, 10, 70)))
        seeder.at(-4 * DAY + lag, partial(seeder.set_image, namespace, "shop-api", "api",
                                          f"{REGISTRY}/api:1.3.0"))
        seeder.at(-26 * HOUR + lag, partial(seeder.set_image, namespace, "shop-api", "api",
                                            f"{REGISTRY}/api:1.4.0"))
        seeder.at(-6 * DAY + lag, partial(seeder.create, web))
        seeder.at(-6 * DAY + lag + 60, partial(seeder.create, _service(namespace, "shop-web")))
    # Velero's default storage location; its controller finds it Available.
    seeder.at(-14 * DAY + 60, partial(seeder.create, _backup_location()))
    seeder.at(-30, partial(_revalidate_location, seeder))
    worker = _deployment("shop-staging", "shop-worker", "worker", f"{REGISTRY}/worker:1.4.0", 1,
                         _resources("50m", "128Mi", "500m", "256Mi"),
                         {"QUEUE": "orders", "SHOP_ENV": "staging"})
    worker["spec"]["template"]["spec"]["containers"][0].pop("ports")
    worker["spec"]["template"]["spec"]["containers"][0].pop("readinessProbe")
    seeder.at(-26 * HOUR + 300, partial(seeder.create, worker))
    seeder.at(0, partial(_worker_crashloop, seeder))
    # The bad release of the demo: `deploy shop-api 1.6.0` fails verification.
    seeder.traffic.add(":1.6.0", Profile(error_ratio=0.2, p99_seconds=0.45))
    seeder.run()


def _worker_crashloop(seeder: Seeder) -> None:
    """shop-worker starts OOM-killing now; its last run's log is laid out over that run."""
    pod_type = seeder.api.types.by_kind("", "Pod")
    assert pod_type is not None
    started = min((p["metadata"]["creationTimestamp"]
                   for p in seeder.api.store.list(pod_type, "shop-staging")
                   if p["metadata"]["name"].startswith("shop-worker-")), default=None)
    now = seeder.clock.now()
    shape = CrashLoop("shop-staging", "shop-worker", "worker", "OOMKilled", 137, 7, "", 30)
    _, run_start, run_end = crash_window(shape, parse_time(started) if started else now, now)
    lines = [
        "INFO worker: starting registry.example.com/shop/worker:1.4.0",
        "INFO worker: connected to queue orders (prefetch=500)",
        "INFO worker: processing batch 8810 (1180 orders)",
        "INFO worker: processing batch 8811 (1312 orders)",
        "WARN worker: memory usage high (rss=231Mi, limit=256Mi)",
        "INFO worker: processing batch 8812 (4870 orders)",
        "ERROR worker: out of memory while processing batch 8812 (rss=255Mi)",
    ]
    step = (run_end - run_start) / (len(lines) - 1)
    log = "".join(f"{fmt_time(run_start + step * i)} {line}\n" for i, line in enumerate(lines))
    seeder.scripts.add_crashloop(CrashLoop("shop-staging", "shop-worker", "worker", "OOMKilled",
                                           137, 7, log, 30))


def run_seed(name: str, seeder: Seeder) -> None:
    """Build the named world. A build replays history through the controllers; builds in
    the next few minutes start from a copy of that result (same names and uids, timestamps
    as of the copied build), which keeps test fixtures fast."""
    with _CACHE_LOCK:
        world = _WORLDS.get(name)
    if world is not None and time.monotonic() - world.built_at < CACHE_SECONDS:
        world.restore(seeder)
        return
    if name == "demo":
        seed_demo(seeder)
    elif name == "empty":
        seed_empty(seeder)
    else:
        raise ValueError(f"unknown seed {name!r}; choose one of {', '.join(SEEDS)}")
    with _CACHE_LOCK:
        _WORLDS[name] = World.capture(seeder)


@dataclass(frozen=True)
class World:
    """A seeded world, captured for reuse."""

    store: tuple[dict[Key, JSON], dict[Key, ResourceType], int]
    crashloops: tuple[CrashLoop, ...]
    image_pull_errors: tuple[str, ...]
    never_ready: tuple[tuple[str, str], ...]
    traffic: tuple[tuple[str, Profile], ...]
    rng_state: Any
    built_at: float
    cpu_utilization: tuple[tuple[tuple[str, str], int], ...] = ()

    @classmethod
    def capture(cls, seeder: Seeder) -> World:
        scripts = seeder.scripts
        return cls(seeder.api.store.export(), tuple(scripts.crashloops.values()),
                   tuple(scripts.image_pull_errors), tuple(scripts.never_ready),
                   seeder.traffic.items(), seeder.api.rng.getstate(), time.monotonic(),
                   tuple(scripts.cpu_utilization.items()))

    def restore(self, seeder: Seeder) -> None:
        seeder.api.store.load(self.store)
        for loop in self.crashloops:
            seeder.scripts.add_crashloop(loop)
        for substring in self.image_pull_errors:
            seeder.scripts.add_image_pull_error(substring)
        for namespace, workload in self.never_ready:
            seeder.scripts.add_never_ready(namespace, workload)
        for substring, profile in self.traffic:
            seeder.traffic.add(substring, profile)
        for (namespace, workload), percent in self.cpu_utilization:
            seeder.scripts.set_cpu_utilization(namespace, workload, percent)
        seeder.api.rng.setstate(self.rng_state)


_WORLDS: dict[str, World] = {}
_CACHE_LOCK = threading.Lock()
