"""kube-state-metrics' container series of the simulated pods, served with the synthetic traffic
at `GET /_sim/metrics`, so alert rules written for kube-prometheus (`KubePodCrashLooping` over
`kube_pod_container_status_waiting_reason`) fire against the simulated cluster as they would
against a real one.

Served, per container of every pod (labels `namespace`, `pod`, `container`, `uid`):
`kube_pod_container_status_restarts_total` and, while it waits,
`kube_pod_container_status_waiting_reason{reason}` at 1 (kube-state-metrics 2.x exposes only
the current reason, as here); `kube_pod_container_resource_limits{resource="cpu"|"memory",
unit="core"|"byte"}` for each limit its spec sets.

And, for each running container, what the kubelet's cAdvisor would report (labels
`namespace`, `pod`, `container`): `container_cpu_usage_seconds_total`, as if the container had
used, since it started, the scripted CPU utilization of its workload (`script_cpu_utilization`;
20% when none) of its CPU request (else its limit), and `container_memory_working_set_bytes`,
a steady 55% of its memory limit (else 110% of its request). Modelled, not measured: there are
no processes; enough for `metrics <app>` to show CPU and memory against limits.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from .clock import parse_time
from .errors import ApiError
from .platform_kinds import quantity_bytes
from .resources import ResourceRegistry
from .store import Store

__all__ = ["exposition"]

JSON = dict[str, Any]


DEFAULT_CPU_PERCENT = 20  # of the request, when no script sets the workload's utilization
MEMORY_SHARE_OF_LIMIT = 0.55


def exposition(store: Store, types: ResourceRegistry, now: datetime | None = None,
               cpu_percent: Callable[[JSON], int | None] = lambda _pod: None) -> str:
    """The Prometheus text format (0.0.4) of every pod container's restarts, waiting reason,
    limits, and (with `now`) modelled CPU and memory use; `cpu_percent` gives a pod's scripted
    CPU utilization (percent of its request), None for the default."""
    pod_type = types.by_kind("", "Pod")
    pods = store.list(pod_type) if pod_type is not None else []
    restarts: list[str] = []
    waiting: list[str] = []
    limits: list[str] = []
    cpu: list[str] = []
    memory: list[str] = []
    for pod in pods:
        meta = pod["metadata"]
        specs = {c.get("name"): c for c in (pod.get("spec") or {}).get("containers") or []}
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            base = ",".join(f'{key}="{_escape(str(value))}"' for key, value in (
                ("namespace", meta.get("namespace", "")), ("pod", meta["name"]),
                ("uid", meta.get("uid", "")), ("container", status.get("name", ""))))
            restarts.append(f"kube_pod_container_status_restarts_total{{{base}}} "
                            f"{int(status.get('restartCount') or 0)}")
            reason = ((status.get("state") or {}).get("waiting") or {}).get("reason")
            if reason:
                waiting.append(f'kube_pod_container_status_waiting_reason{{{base},'
                               f'reason="{_escape(str(reason))}"}} 1')
            resources = (specs.get(status.get("name")) or {}).get("resources") or {}
            try:
                cores, mem_limit = _quantities(resources.get("limits") or {})
            except (ApiError, ValueError):  # a malformed quantity: no limits series
                cores, mem_limit = None, None
            if cores is not None:
                limits.append(f'kube_pod_container_resource_limits{{{base},resource="cpu",'
                              f'unit="core"}} {cores:g}')
            if mem_limit is not None:
                limits.append(f'kube_pod_container_resource_limits{{{base},resource="memory",'
                              f'unit="byte"}} {mem_limit}')
            running = (status.get("state") or {}).get("running")
            if now is None or not running:
                continue
            used = _usage(resources, running, now, cpu_percent(pod))
            if used is None:
                continue
            seconds, working_set = used
            short = base.replace(f',uid="{_escape(str(meta.get("uid", "")))}"', "")
            cpu.append(f"container_cpu_usage_seconds_total{{{short}}} {seconds:.3f}")
            if working_set is not None:
                memory.append(f"container_memory_working_set_bytes{{{short}}} {working_set}")
    lines = [
        "# HELP kube_pod_container_status_restarts_total The number of container restarts "
        "per container.",
        "# TYPE kube_pod_container_status_restarts_total counter",
        *restarts,
        "# HELP kube_pod_container_status_waiting_reason Describes the reason the container is "
        "currently in waiting state.",
        "# TYPE kube_pod_container_status_waiting_reason gauge",
        *waiting,
        "# HELP kube_pod_container_resource_limits The number of requested limit resource by a "
        "container.",
        "# TYPE kube_pod_container_resource_limits gauge",
        *limits,
        "# HELP container_cpu_usage_seconds_total Cumulative cpu time consumed in seconds "
        "(modelled).",
        "# TYPE container_cpu_usage_seconds_total counter",
        *cpu,
        "# HELP container_memory_working_set_bytes Current working set in bytes (modelled).",
        "# TYPE container_memory_working_set_bytes gauge",
        *memory,
    ]
    return "\n".join(lines) + "\n"


def _quantities(values: JSON) -> tuple[float | None, int | None]:
    """CPU in cores and memory in bytes of a requests or limits map (None where unset)."""
    cores = None
    if values.get("cpu") is not None:
        text = str(values["cpu"]).strip()
        cores = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    memory = quantity_bytes(values["memory"]) if values.get("memory") is not None else None
    return cores, memory


def _usage(resources: JSON, running: JSON, now: datetime,
           percent: int | None) -> tuple[float, int | None] | None:
    """CPU seconds used since the container started, and its working set in bytes."""
    try:
        request_cores, request_bytes = _quantities(resources.get("requests") or {})
        limit_cores, limit_bytes = _quantities(resources.get("limits") or {})
        started = parse_time(running["startedAt"])
    except (ApiError, KeyError, TypeError, ValueError):
        return None
    cores = request_cores if request_cores is not None else limit_cores
    if cores is None:
        return None
    share = (DEFAULT_CPU_PERCENT if percent is None else percent) / 100
    seconds = max(0.0, (now - started).total_seconds()) * cores * share
    if limit_bytes is not None:
        working_set: int | None = int(limit_bytes * MEMORY_SHARE_OF_LIMIT)
    elif request_bytes is not None:
        working_set = int(request_bytes * 1.1)
    else:
        working_set = None
    return seconds, working_set


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
