"""kube-state-metrics' container series of the simulated pods, served with the synthetic traffic
at `GET /_sim/metrics`, so alert rules written for kube-prometheus (`KubePodCrashLooping` over
`kube_pod_container_status_waiting_reason`) fire against the simulated cluster as they would
against a real one.

Served, per container of every pod (labels `namespace`, `pod`, `container`, `uid`):
`kube_pod_container_status_restarts_total` and, while it waits,
`kube_pod_container_status_waiting_reason{reason}` at 1 (kube-state-metrics 2.x exposes only
the current reason, as here).
"""

from __future__ import annotations

from typing import Any

from .resources import ResourceRegistry
from .store import Store

__all__ = ["exposition"]

JSON = dict[str, Any]


def exposition(store: Store, types: ResourceRegistry) -> str:
    """The Prometheus text format (0.0.4) of every pod container's restarts and waiting reason."""
    pod_type = types.by_kind("", "Pod")
    pods = store.list(pod_type) if pod_type is not None else []
    restarts: list[str] = []
    waiting: list[str] = []
    for pod in pods:
        meta = pod["metadata"]
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
    lines = [
        "# HELP kube_pod_container_status_restarts_total The number of container restarts "
        "per container.",
        "# TYPE kube_pod_container_status_restarts_total counter",
        *restarts,
        "# HELP kube_pod_container_status_waiting_reason Describes the reason the container is "
        "currently in waiting state.",
        "# TYPE kube_pod_container_status_waiting_reason gauge",
        *waiting,
    ]
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
