"""The StatefulSet controller: pods named `{name}-{ordinal}` created in order, rolled from
the highest ordinal down when the template changes, with ControllerRevisions and revision
fields in status as the real controller keeps them."""

from __future__ import annotations

from typing import Any

from .controllers import BUILTINS, Ctx, owner_ref
from .deployments import template_hash
from .replicasets import pod_available, pod_from_template, pod_ready
from .store import clone

JSON = dict[str, Any]
REVISION_LABEL = "controller-revision-hash"


def _ordinal(pod: JSON, name: str) -> int:
    suffix = pod["metadata"]["name"][len(name) + 1:]
    return int(suffix) if suffix.isdigit() else -1


def revision_data(sts: JSON) -> JSON:
    """What the real controller stores in a ControllerRevision (getPatch): a strategic merge
    patch that puts the whole template back, `$patch: replace` inside the template."""
    return {"spec": {"template": {**clone(sts["spec"]["template"]), "$patch": "replace"}}}


def _ensure_revision(ctx: Ctx, sts: JSON, revision_name: str) -> None:
    """The update revision as the real controller finds it: a revision equal to the template
    is re-used, and when it is not the newest its `.revision` moves to the next number (that
    is how a rollback shows in history); otherwise a new one is created."""
    namespace = sts["metadata"]["namespace"]
    existing = ctx.owned(sts, "apps", "ControllerRevision")
    top = max((int(r.get("revision", 0)) for r in existing), default=0)
    equal = next((r for r in existing if r["metadata"]["name"] == revision_name), None)
    if equal is not None:
        if int(equal.get("revision", 0)) < top:
            equal["revision"] = top + 1
            ctx.write(equal)
        return
    if ctx.get("apps", "ControllerRevision", namespace, revision_name) is not None:
        return
    labels = dict((sts["spec"]["template"].get("metadata") or {}).get("labels") or {})
    labels[REVISION_LABEL] = revision_name
    ctx.create({
        "apiVersion": "apps/v1", "kind": "ControllerRevision",
        "metadata": {"name": revision_name, "namespace": namespace, "labels": labels,
                     "ownerReferences": [owner_ref(sts)]},
        "data": revision_data(sts),
        "revision": top + 1,
    })


@BUILTINS.for_kind("apps", "StatefulSet", name="statefulset-controller", order=25)
def reconcile_statefulset(ctx: Ctx, sts: JSON) -> None:
    name = sts["metadata"]["name"]
    spec = sts["spec"]
    replicas = int(spec.get("replicas", 1))
    update_revision = f"{name}-{template_hash(spec['template'])}"
    _ensure_revision(ctx, sts, update_revision)
    pods = {_ordinal(p, name): p for p in ctx.owned(sts, "", "Pod")}
    ordered = spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady"
    acted = False
    extra = sorted((o for o in pods if o >= replicas or o < 0), reverse=True)
    for ordinal in extra[:1] if ordered else extra:
        ctx.delete(pods.pop(ordinal))
        acted = True
    for ordinal in range(replicas):
        if acted and ordered:
            break
        if ordinal in pods:
            if ordered and not pod_ready(pods[ordinal]):
                acted = True
            continue
        pods[ordinal] = ctx.create(_pod(sts, ordinal, update_revision))
        ctx.event(sts, "Normal", "SuccessfulCreate",
                  f"create Pod {name}-{ordinal} in StatefulSet {name} successful",
                  component="statefulset-controller")
        acted = True
    rolling = (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"
    partition = int(((spec.get("updateStrategy") or {}).get("rollingUpdate") or {})
                    .get("partition", 0))
    if rolling and not acted and all(pod_ready(p) for p in pods.values()):
        stale = [o for o, p in pods.items() if o >= partition
                 and p["metadata"]["labels"].get(REVISION_LABEL) != update_revision]
        if stale:
            ordinal = max(stale)
            ctx.delete(pods.pop(ordinal))
            ctx.event(sts, "Normal", "SuccessfulDelete",
                      f"delete Pod {name}-{ordinal} in StatefulSet {name} successful",
                      component="statefulset-controller")
    _update_status(ctx, sts, list(pods.values()), update_revision, replicas)


def _pod(sts: JSON, ordinal: int, update_revision: str) -> JSON:
    spec = sts["spec"]
    pod_name = f"{sts['metadata']['name']}-{ordinal}"
    pod = pod_from_template(sts, spec["template"], pod_name, {
        REVISION_LABEL: update_revision,
        "statefulset.kubernetes.io/pod-name": pod_name,
        "apps.kubernetes.io/pod-index": str(ordinal),
    })
    pod["spec"]["hostname"] = pod_name
    if spec.get("serviceName"):
        pod["spec"]["subdomain"] = spec["serviceName"]
    return pod


def _update_status(ctx: Ctx, sts: JSON, pods: list[JSON], update_revision: str,
                   replicas: int) -> None:
    old = sts.get("status") or {}
    current_revision = old.get("currentRevision") or update_revision
    updated = sum(1 for p in pods
                  if p["metadata"]["labels"].get(REVISION_LABEL) == update_revision)
    if updated == replicas and len(pods) == replicas:
        current_revision = update_revision
    min_ready = int(sts["spec"].get("minReadySeconds", 0))
    status: JSON = {
        "observedGeneration": sts["metadata"].get("generation", 1),
        "replicas": len(pods),
        "readyReplicas": sum(1 for p in pods if pod_ready(p)),
        "availableReplicas": sum(1 for p in pods if pod_available(ctx, p, min_ready)),
        "currentReplicas": sum(1 for p in pods
                               if p["metadata"]["labels"].get(REVISION_LABEL)
                               == current_revision),
        "updatedReplicas": updated,
        "currentRevision": current_revision,
        "updateRevision": update_revision,
        "collisionCount": 0,
    }
    sts["status"] = {k: v for k, v in status.items()
                     if v or k in ("replicas", "observedGeneration", "collisionCount")}
    ctx.write(sts)
