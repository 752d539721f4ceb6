"""What the platform-alert diagnoses share: safe PromQL from label values, vector queries and
target health through the one Prometheus client, typed API groups the KubeClients do not
carry, owner walks from a pod to the configured app, and human units."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from bot.config import AppConfig
from bot.errors import NotFound, PermanentError, RetryableError
from bot.kube import client
from bot.names import is_dns1123_subdomain
from bot.prometheus import PrometheusClient, labels_selector, promql_string
from bot.registry import HandlerContext

__all__ = [
    "Sample",
    "app_of_pod",
    "app_of_workload",
    "batch_api",
    "check_name",
    "check_window",
    "fmt_bytes",
    "labels_selector",
    "networking_api",
    "optional",
    "owner_workload",
    "prometheus_for",
    "promql_string",
    "stamp",
    "storage_api",
    "targets",
    "utc",
    "vector",
]

Sample = tuple[dict[str, str], float]
_WINDOW = re.compile(r"(?:[0-9]+[smhdwy])+\Z")


def check_name(value: str, what: str) -> str:
    """A pydantic validator body: object names reach API paths only when DNS-1123."""
    if not is_dns1123_subdomain(value):
        raise ValueError(f"{what} must be a DNS-1123 name")
    return value


def check_window(value: str) -> str:
    if not _WINDOW.fullmatch(value) or len(value) > 12:
        raise ValueError("a range window looks like 5m, 6h or 1d12h")
    return value


def prometheus_for(ctx: HandlerContext) -> PrometheusClient | None:
    url = ctx.settings.prometheus_url
    return PrometheusClient(url) if url else None


async def vector(prometheus: PrometheusClient, promql: str) -> list[Sample]:
    """Every series of an instant query with its labels."""
    return await prometheus.vector(promql)


async def targets(prometheus: PrometheusClient) -> list[dict[str, Any]]:
    """The active scrape targets (labels, health, lastError, lastScrape)."""
    return await prometheus.targets()


async def optional(coro: Any) -> Any:
    """The value of a Prometheus read, or None when Prometheus could not answer (the
    diagnosis then says so rather than failing)."""
    try:
        return await coro
    except (PermanentError, RetryableError):
        return None


def batch_api(ctx: HandlerContext) -> client.BatchV1Api:
    return client.BatchV1Api(ctx.kube.api_client)


def storage_api(ctx: HandlerContext) -> client.StorageV1Api:
    return client.StorageV1Api(ctx.kube.api_client)


def networking_api(ctx: HandlerContext) -> client.NetworkingV1Api:
    return client.NetworkingV1Api(ctx.kube.api_client)


def app_of_workload(ctx: HandlerContext, kind: str, name: str) -> AppConfig | None:
    """The configured app whose workload is `kind/name` in the run's environment."""
    for app in ctx.settings.apps_in(ctx.environment.name).values():
        if app.workload_name == name and app.kind == kind:
            return app
    return None


async def owner_workload(ctx: HandlerContext, pod: Any) -> tuple[str, str] | None:
    """(kind, name) of the workload that controls `pod`: a Deployment through its ReplicaSet,
    or the direct controller (StatefulSet, Job, ...)."""
    refs = [r for r in (pod.metadata.owner_references or []) if r.controller]
    if not refs:
        return None
    ref = refs[0]
    if ref.kind != "ReplicaSet":
        return str(ref.kind), str(ref.name)
    try:
        rs = await ctx.kube.call(ctx.kube.apps.read_namespaced_replica_set, ref.name,
                                 pod.metadata.namespace)
    except NotFound:
        return "ReplicaSet", str(ref.name)
    owners = [r for r in (rs.metadata.owner_references or []) if r.controller]
    return (str(owners[0].kind), str(owners[0].name)) if owners else ("ReplicaSet", str(ref.name))


async def app_of_pod(ctx: HandlerContext, pod: Any) -> tuple[str | None, AppConfig | None]:
    """`Kind/name` of the pod's workload and the configured app it belongs to, if any."""
    owner = await owner_workload(ctx, pod)
    if owner is None:
        return None, None
    return f"{owner[0]}/{owner[1]}", app_of_workload(ctx, *owner)


def fmt_bytes(value: float | None) -> str:
    if value is None:
        return "unknown"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover - the loop returns


def utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def stamp(moment: datetime | None) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if moment else "unknown"
