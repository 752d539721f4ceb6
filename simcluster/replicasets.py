"""The ReplicaSet controller: keep spec.replicas pods (labelled from the template, owned by
the ReplicaSet) and report replicas/ready/available counts in status."""

from __future__ import annotations

from typing import Any

from .clock import parse_time
from .controllers import BUILTINS, Ctx, owner_ref
from .store import clone

JSON = dict[str, Any]


def pod_ready(pod: JSON) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def pod_available(ctx: Ctx, pod: JSON, min_ready_seconds: int) -> bool:
    if not pod_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    for cond in pod["status"]["conditions"]:
        if cond.get("type") == "Ready":
            since = parse_time(cond["lastTransitionTime"])
            return (ctx.now() - since).total_seconds() >= min_ready_seconds
    return False


def pod_from_template(owner: JSON, template: JSON, name: str | None = None,
                      extra_labels: dict[str, str] | None = None) -> JSON:
    meta = template.get("metadata") or {}
    pod_meta: JSON = {
        "namespace": owner["metadata"]["namespace"],
        "labels": dict(meta.get("labels") or {}) | (extra_labels or {}),
        "ownerReferences": [owner_ref(owner)],
    }
    if meta.get("annotations"):
        pod_meta["annotations"] = dict(meta["annotations"])
    if name:
        pod_meta["name"] = name
    else:
        pod_meta["generateName"] = f"{owner['metadata']['name']}-"
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta,
            "spec": clone(template.get("spec") or {})}


def _deletion_rank(pod: JSON) -> tuple[int, str]:
    """Delete unscheduled, then pending, then not-ready, then the newest pods first."""
    status = pod.get("status") or {}
    if not pod["spec"].get("nodeName"):
        stage = 0
    elif status.get("phase") == "Pending":
        stage = 1
    elif not pod_ready(pod):
        stage = 2
    else:
        stage = 3
    return stage, _invert(pod["metadata"]["creationTimestamp"] + pod["metadata"]["name"])


def _invert(text: str) -> str:
    return "".join(chr(0x10FFFF - ord(ch)) for ch in text)


@BUILTINS.for_kind("apps", "ReplicaSet", name="replicaset-controller", order=20)
def reconcile_replicaset(ctx: Ctx, rs: JSON) -> None:
    want = int(rs["spec"].get("replicas", 1))
    ctx.adopt(rs, "", "Pod")
    pods = ctx.owned(rs, "", "Pod")
    if len(pods) < want:
        for _ in range(want - len(pods)):
            pod = ctx.create(pod_from_template(rs, rs["spec"]["template"]))
            ctx.event(rs, "Normal", "SuccessfulCreate",
                      f"Created pod: {pod['metadata']['name']}",
                      component="replicaset-controller")
    elif len(pods) > want:
        for pod in sorted(pods, key=_deletion_rank)[: len(pods) - want]:
            ctx.delete(pod)
            ctx.event(rs, "Normal", "SuccessfulDelete",
                      f"Deleted pod: {pod['metadata']['name']}",
                      component="replicaset-controller")
    pods = ctx.owned(rs, "", "Pod")
    min_ready = int(rs["spec"].get("minReadySeconds", 0))
    labels = (rs["spec"]["template"].get("metadata") or {}).get("labels") or {}
    status: JSON = {
        "replicas": len(pods),
        "fullyLabeledReplicas": sum(
            1 for p in pods if labels.items() <= (p["metadata"].get("labels") or {}).items()),
        "readyReplicas": sum(1 for p in pods if pod_ready(p)),
        "availableReplicas": sum(1 for p in pods if pod_available(ctx, p, min_ready)),
        "observedGeneration": rs["metadata"].get("generation", 1),
    }
    rs["status"] = {k: v for k, v in status.items() if v or k == "replicas"}
    ctx.write(rs)
