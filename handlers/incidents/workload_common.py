"""What the workload alert diagnoses share: alert params with a pod and container, PromQL
string quoting, one-value Prometheus queries that never fail a diagnosis, and small
formatting helpers."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from pydantic import field_validator

from bot.errors import PermanentError, RetryableError
from bot.names import is_dns1123_subdomain
from bot.numbers import is_digits
from bot.prometheus import PrometheusClient, labels_selector, promql_string
from bot.registry import HandlerContext
from handlers.deploy.kubernetes import REVISION, owned_replica_sets
from handlers.incident import AlertParams
from handlers.pods import Ownership, event_time
from handlers.workload import Workload

__all__ = [
    "RevisionFacts",
    "WorkloadAlertParams",
    "check_window",
    "container_spec",
    "events_text",
    "mebibytes",
    "pick_pod",
    "prometheus_value",
    "promql_string",
    "resource",
    "revision_of",
    "selector",
    "to_bytes",
]

_WINDOW = re.compile(r"[1-9][0-9]{0,3}[smhd]")



class WorkloadAlertParams(AlertParams):
    """A workload alert's pod and container, when it names them (validated names)."""

    pod: str | None = None
    container: str | None = None

    @field_validator("pod", "container")
    @classmethod
    def _names(cls, value: str | None) -> str | None:
        if value is not None and not is_dns1123_subdomain(value):
            raise ValueError("not a valid name")
        return value


def selector(**labels: str) -> str:
    return labels_selector(labels)


def check_window(value: str) -> str:
    if not _WINDOW.fullmatch(value):
        raise ValueError("a window is a number and a unit s, m, h or d, e.g. 5m")
    return value


async def prometheus_value(ctx: HandlerContext, promql: str) -> tuple[float | None, str | None]:
    """The query's value, or None and why there is none (never raises for Prometheus)."""
    url = ctx.settings.prometheus_url
    if not url:
        return None, "Prometheus is not configured (PROMETHEUS_URL)"
    try:
        async with PrometheusClient(url) as prometheus:
            value = await prometheus.query(promql)
    except (PermanentError, RetryableError) as exc:
        return None, str(exc)
    if value is None or math.isnan(value):
        return None, "Prometheus has no data for it"
    return value, None


def to_bytes(quantity: Any) -> float | None:
    if quantity in (None, ""):
        return None
    try:
        from kubernetes.utils import parse_quantity  # on use: see bot/lazy.py

        return float(parse_quantity(str(quantity)))
    except ValueError:
        return None


def mebibytes(value: float) -> str:
    if value >= 1024**3:
        return f"{value / 1024**3:.1f}Gi"
    return f"{math.ceil(value / 1024**2)}Mi"


def container_spec(pod: Any, container: str | None) -> Any | None:
    for spec in pod.spec.containers if pod is not None and pod.spec else []:
        if container is None or spec.name == container:
            return spec
    return None


def resource(spec: Any, kind: str, name: str) -> str | None:
    resources = spec.resources if spec is not None else None
    values = getattr(resources, kind, None) if resources is not None else None
    return (values or {}).get(name)


def pick_pod(pods: list[Any], wanted: str | None, score: Any) -> tuple[Any | None, str | None]:
    """The pod the alert names, else the one scoring highest; and a note when the named pod
    is gone (replaced since the alert fired)."""
    if wanted:
        for pod in pods:
            if pod.metadata.name == wanted:
                return pod, None
    candidates = [p for p in pods if score(p) > 0]
    best = max(candidates, key=score) if candidates else None
    if wanted:
        note = f"pod {wanted} is gone" + (f"; looked at {best.metadata.name}" if best else "")
        return best, note
    return best, None


def events_text(events: list[Any]) -> list[str]:
    lines = []
    for e in events:
        count = f" x{e.count}" if e.count and e.count > 1 else ""
        lines.append(f"  {event_time(e):%H:%M:%S}  {e.type} {e.reason}{count}: {e.message}")
    return lines or ["  none"]


@dataclass(frozen=True)
class RevisionFacts:
    """Which Deployment revision a pod runs, whether it is the latest, and the one before."""

    number: str | None
    latest: bool
    previous: str | None
    replica_set: Any | None
    text: str


async def revision_of(ctx: HandlerContext, workload: Workload,
                      ownership: Ownership) -> RevisionFacts:
    if workload.kind != "Deployment":
        return RevisionFacts(None, False, None, None,
                             f"{workload.kind}s have no ReplicaSet revisions to compare")
    rs = ownership.replica_set
    if rs is None or not ownership.belongs:
        return RevisionFacts(None, False, None, None,
                             f"the pod is not one of {workload.name}'s ({ownership.why})")
    number = (rs.metadata.annotations or {}).get(REVISION)
    numbers = sorted(int(n) for n in (
        (r.metadata.annotations or {}).get(REVISION, "") for r in
        await owned_replica_sets(ctx, workload)) if is_digits(n))
    older = [n for n in numbers if number and is_digits(number) and n < int(number)]
    previous = str(older[-1]) if older else None
    latest = number is not None and number == workload.revision
    text = f"revision {number}" + (" (the latest)" if latest else
                                   f" (the latest is {workload.revision})")
    text += f"; the one before is {previous}" if previous else "; there is none before it"
    return RevisionFacts(number, latest, previous, rs, text)
