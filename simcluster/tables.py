"""Server-side printing: `kubectl get` asks for `as=Table` (meta.k8s.io/v1) and prints the
columns the API server chose. The columns here are kube-apiserver's own for the kinds opsbot
works with (`pkg/printers/internalversion/printers.go`), and the `additionalPrinterColumns` of
the custom resources' real CRDs (Argo CD's Application, Argo Rollouts' Rollout); any other kind
gets the default table of NAME and AGE, as a custom resource without printer columns does."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

__all__ = ["table", "wants_table"]

JSON = dict[str, Any]
Column = tuple[str, str, str]  # name, type, description
Row = Callable[[JSON, datetime], list[Any]]


def wants_table(accept: str) -> bool:
    return any("as=Table" in part and "g=meta.k8s.io" in part for part in accept.split(","))


def table(obj: JSON, kind: str, now: datetime) -> JSON:
    """A List (or one object) as a meta.k8s.io/v1 Table."""
    items = obj.get("items", []) if "items" in obj else [obj]
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    columns, row = _CUSTOM.get(f"{group}/{kind}") or _PRINTERS.get(kind) \
        or (_DEFAULT_COLUMNS, _default)
    rows = [{"cells": row(item, now), "object": {
        "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
        "metadata": item.get("metadata", {})}} for item in items]
    metadata = {k: v for k, v in (obj.get("metadata") or {}).items()
                if k in ("resourceVersion", "continue")} if "items" in obj else {}
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata,
            "columnDefinitions": [{"name": n, "type": t, "format": "name" if n == "Name" else "",
                                   "description": d, "priority": WIDE if n in _WIDE else 0}
                                  for n, t, d in columns],
            "rows": rows}


def age(item: JSON, now: datetime) -> str:
    created = (item.get("metadata") or {}).get("creationTimestamp")
    if not created:
        return "<unknown>"
    return short_duration(now - datetime.fromisoformat(str(created).replace("Z", "+00:00")))


def short_duration(delta: Any) -> str:
    """kubectl's `duration.HumanDuration`: 5s, 3m2s, 5h, 3d5h, 9d, 2y..."""
    seconds = int(delta.total_seconds())
    if seconds < 0:
        seconds = 0
    if seconds < 60 * 2:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        rest = seconds % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = hours // 24
        rest = days % 365
        return f"{days // 365}y{rest}d" if rest else f"{days // 365}y"
    return f"{hours // 24 // 365}y"


def _name(item: JSON) -> str:
    return str((item.get("metadata") or {}).get("name", ""))


_DEFAULT_COLUMNS: list[Column] = [("Name", "string", "Name of the object"),
                                  ("Age", "string", "Time since creation")]


def _default(item: JSON, now: datetime) -> list[Any]:
    return [_name(item), age(item, now)]


def _deployment(item: JSON, now: datetime) -> list[Any]:
    spec, status = item.get("spec") or {}, item.get("status") or {}
    return [_name(item), f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
            status.get("updatedReplicas", 0), status.get("availableReplicas", 0), age(item, now)]


def _replica_set(item: JSON, now: datetime) -> list[Any]:
    spec, status = item.get("spec") or {}, item.get("status") or {}
    return [_name(item), spec.get("replicas", 0), status.get("replicas", 0),
            status.get("readyReplicas", 0), age(item, now)]


def _stateful_set(item: JSON, now: datetime) -> list[Any]:
    spec, status = item.get("spec") or {}, item.get("status") or {}
    return [_name(item), f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
            age(item, now)]


def _pod(item: JSON, now: datetime) -> list[Any]:
    status = item.get("status") or {}
    containers = status.get("containerStatuses") or []
    total = len((item.get("spec") or {}).get("containers") or []) or len(containers)
    ready = sum(1 for c in containers if c.get("ready"))
    restarts = sum(int(c.get("restartCount", 0)) for c in containers)
    reason = status.get("reason") or status.get("phase", "")
    for c in containers:  # a waiting or terminated container's reason, as kubectl shows it
        state = c.get("state") or {}
        if state.get("waiting", {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif state.get("terminated", {}).get("reason"):
            reason = state["terminated"]["reason"]
    if (item.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Terminating"
    return [_name(item), f"{ready}/{total}", reason, restarts, age(item, now)]


def _service(item: JSON, now: datetime) -> list[Any]:
    spec = item.get("spec") or {}
    ports = ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in spec.get("ports") or [])
    external = ",".join(spec.get("externalIPs") or []) or "<none>"
    return [_name(item), spec.get("type", "ClusterIP"), spec.get("clusterIP", "<none>"),
            external, ports or "<none>", age(item, now)]


def _event(item: JSON, now: datetime) -> list[Any]:
    involved = item.get("involvedObject") or {}
    last = item.get("lastTimestamp") or item.get("eventTime") or \
        (item.get("metadata") or {}).get("creationTimestamp")
    seen = short_duration(now - datetime.fromisoformat(str(last).replace("Z", "+00:00"))) \
        if last else "<unknown>"
    return [seen, item.get("type", ""), item.get("reason", ""),
            f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}",
            item.get("message", "")]


def _application(item: JSON, now: datetime) -> list[Any]:
    status, spec = item.get("status") or {}, item.get("spec") or {}
    return [_name(item), (status.get("sync") or {}).get("status"),
            (status.get("health") or {}).get("status"),
            (status.get("sync") or {}).get("revision"), spec.get("project")]


def _rollout(item: JSON, now: datetime) -> list[Any]:
    spec, status = item.get("spec") or {}, item.get("status") or {}
    return [_name(item), spec.get("replicas"), status.get("replicas"),
            status.get("updatedReplicas"), status.get("availableReplicas"), age(item, now)]


WIDE = 10  # a column kubectl shows only with -o wide
_WIDE = frozenset({"Revision", "Project"})

# Custom resources by group/kind, with their CRDs' additionalPrinterColumns.
_CUSTOM: dict[str, tuple[list[Column], Row]] = {
    # applications.argoproj.io: Sync Status, Health Status; Revision and Project wide only.
    "argoproj.io/Application": ([("Name", "string", ""), ("Sync Status", "string", ""),
                                 ("Health Status", "string", ""), ("Revision", "string", ""),
                                 ("Project", "string", "")], _application),
    "argoproj.io/Rollout": ([("Name", "string", ""),
                             ("Desired", "integer", "Number of desired pods"),
                             ("Current", "integer", ""), ("Up-to-date", "integer", ""),
                             ("Available", "integer", ""), ("Age", "date", "")], _rollout),
}

_PRINTERS: dict[str, tuple[list[Column], Row]] = {
    "Deployment": ([("Name", "string", ""), ("Ready", "string", ""),
                    ("Up-to-date", "integer", ""), ("Available", "integer", ""),
                    ("Age", "string", "")], _deployment),
    "ReplicaSet": ([("Name", "string", ""), ("Desired", "integer", ""),
                    ("Current", "integer", ""), ("Ready", "integer", ""), ("Age", "string", "")],
                   _replica_set),
    "StatefulSet": ([("Name", "string", ""), ("Ready", "string", ""), ("Age", "string", "")],
                    _stateful_set),
    "Pod": ([("Name", "string", ""), ("Ready", "string", ""), ("Status", "string", ""),
             ("Restarts", "string", ""), ("Age", "string", "")], _pod),
    "Service": ([("Name", "string", ""), ("Type", "string", ""), ("Cluster-IP", "string", ""),
                 ("External-IP", "string", ""), ("Port(s)", "string", ""),
                 ("Age", "string", "")], _service),
    "Event": ([("Last Seen", "string", ""), ("Type", "string", ""), ("Reason", "string", ""),
               ("Object", "string", ""), ("Message", "string", "")], _event),
}
