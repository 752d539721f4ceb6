"""The Deployment controller: one ReplicaSet per distinct pod template (reused on rollback),
revision annotations, a rolling (or recreate) progression, history cleanup, and the status
conditions handlers read. Deadlines use the simulated clock (real time plus offset)."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from .clock import parse_time
from .controllers import BUILTINS, Ctx, owner_ref
from .store import clone

JSON = dict[str, Any]
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
HASH_LABEL = "pod-template-hash"
NOT_COPIED = {REVISION, REVISION_HISTORY, DESIRED, MAX_REPLICAS,
              "kubectl.kubernetes.io/last-applied-configuration"}
SAFE_CHARS = "bcdfghjklmnpqrstvwxz2456789"


def template_hash(template: JSON) -> str:
    """Stable hash of a pod template, encoded like the real controller's (rand.SafeEncodeString
    of a 32-bit number), so names look like `shop-api-7d9f8c6b5`."""
    clean = without_hash(template)
    digest = hashlib.sha256(json.dumps(clean, sort_keys=True).encode()).digest()
    number = str(int.from_bytes(digest[:4], "big"))
    return "".join(SAFE_CHARS[ord(ch) % len(SAFE_CHARS)] for ch in number)


def without_hash(template: JSON) -> JSON:
    """The template as the controller compares it: without the hash label, and without a null
    `creationTimestamp` (kubectl sends one; in the API's Go types it is the same as none, so a
    rollback by kubectl finds the old ReplicaSet as the real controller does)."""
    clean = clone(template)
    metadata = clean.get("metadata") or {}
    labels = metadata.get("labels")
    if labels is not None:
        labels.pop(HASH_LABEL, None)
    if "creationTimestamp" in metadata and metadata["creationTimestamp"] is None:
        del metadata["creationTimestamp"]
    return clean


def revision(rs: JSON) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def _resolve(value: Any, replicas: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        scaled = int(value[:-1]) * replicas / 100
        return math.ceil(scaled) if round_up else math.floor(scaled)
    return int(value or 0)


def surge_and_unavailable(dep: JSON) -> tuple[int, int]:
    spec = dep["spec"]
    replicas = int(spec.get("replicas", 1))
    strategy = spec.get("strategy") or {}
    if strategy.get("type") == "Recreate":
        return 0, replicas
    rolling = strategy.get("rollingUpdate") or {}
    surge = _resolve(rolling.get("maxSurge", "25%"), replicas, True)
    unavailable = _resolve(rolling.get("maxUnavailable", "25%"), replicas, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, min(unavailable, replicas)


@BUILTINS.for_kind("apps", "Deployment", name="deployment-controller", order=10)
def reconcile_deployment(ctx: Ctx, dep: JSON) -> None:
    spec = dep["spec"]
    ctx.adopt(dep, "apps", "ReplicaSet")
    all_rs: list[JSON] = sorted(ctx.owned(dep, "apps", "ReplicaSet"),
                    key=lambda r: (r["metadata"]["creationTimestamp"], r["metadata"]["name"]))
    template = without_hash(spec["template"])
    new_rs = next((r for r in all_rs if without_hash(r["spec"]["template"]) == template), None)
    created = False
    if new_rs is None and not spec.get("paused"):
        new_rs = _create_rs(ctx, dep, all_rs)
        created = True
    elif new_rs is not None:
        new_rs = _sync_new_rs(ctx, dep, new_rs, all_rs)
    old_rs = [r for r in all_rs if new_rs is None or r["metadata"]["uid"] != new_rs["metadata"]
              ["uid"]]
    if new_rs is not None:
        if spec.get("paused"):
            if not any(r["spec"].get("replicas") for r in old_rs):
                _scale(ctx, dep, new_rs, int(spec.get("replicas", 1)))
        elif (spec.get("strategy") or {}).get("type") == "Recreate":
            _recreate(ctx, dep, new_rs, old_rs)
        else:
            _rolling(ctx, dep, new_rs, old_rs)
    _cleanup(ctx, dep, old_rs)
    _update_status(ctx, dep, new_rs, created)


def _create_rs(ctx: Ctx, dep: JSON, all_rs: list[JSON]) -> JSON:
    meta = dep["metadata"]
    pod_hash = template_hash(dep["spec"]["template"])
    template = clone(dep["spec"]["template"])
    template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = pod_hash
    selector = clone(dep["spec"]["selector"])
    selector.setdefault("matchLabels", {})[HASH_LABEL] = pod_hash
    surge, _ = surge_and_unavailable(dep)
    replicas = int(dep["spec"].get("replicas", 1))
    annotations = _copied_annotations(dep)
    annotations.update({REVISION: str(max((revision(r) for r in all_rs), default=0) + 1),
                        DESIRED: str(replicas), MAX_REPLICAS: str(replicas + surge)})
    rs = {
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": f"{meta['name']}-{pod_hash}", "namespace": meta["namespace"],
                     "labels": dict(template["metadata"]["labels"]),
                     "annotations": annotations, "ownerReferences": [owner_ref(dep)]},
        "spec": {"replicas": 0, "minReadySeconds": dep["spec"].get("minReadySeconds", 0),
                 "selector": selector, "template": template},
    }
    return ctx.create(rs)


def _copied_annotations(dep: JSON) -> dict[str, str]:
    return {k: v for k, v in (dep["metadata"].get("annotations") or {}).items()
            if k not in NOT_COPIED}


def _sync_new_rs(ctx: Ctx, dep: JSON, rs: JSON, all_rs: list[JSON]) -> JSON:
    """Rollback reuses the matching ReplicaSet: its revision moves to the top, the old number
    goes to revision-history, and the deployment's annotations are copied over again."""
    top = max((revision(r) for r in all_rs), default=0)
    annotations = rs["metadata"].setdefault("annotations", {})
    current = revision(rs)
    if current < top:
        history = [h for h in annotations.get(REVISION_HISTORY, "").split(",") if h]
        annotations[REVISION_HISTORY] = ",".join([*history, str(current)])
        annotations[REVISION] = str(top + 1)
    annotations.update(_copied_annotations(dep))
    return ctx.write(rs)


def _scale(ctx: Ctx, dep: JSON, rs: JSON, replicas: int) -> None:
    before = int(rs["spec"].get("replicas", 0))
    if before == replicas:
        return
    surge, _ = surge_and_unavailable(dep)
    wanted = int(dep["spec"].get("replicas", 1))
    rs["spec"]["replicas"] = replicas
    rs["metadata"].setdefault("annotations", {}).update(
        {DESIRED: str(wanted), MAX_REPLICAS: str(wanted + surge)})
    rs.update(ctx.write(rs))
    direction = "up" if replicas > before else "down"
    ctx.event(dep, "Normal", "ScalingReplicaSet",
              f"Scaled {direction} replica set {rs['metadata']['name']} from {before} to "
              f"{replicas}", component="deployment-controller")


def _available(rs: JSON) -> int:
    return int((rs.get("status") or {}).get("availableReplicas", 0))


def _rolling(ctx: Ctx, dep: JSON, new_rs: JSON, old_rs: list[JSON]) -> None:
    replicas = int(dep["spec"].get("replicas", 1))
    surge, unavailable = surge_and_unavailable(dep)
    new_count = int(new_rs["spec"].get("replicas", 0))
    total = new_count + sum(int(r["spec"].get("replicas", 0)) for r in old_rs)
    if new_count > replicas:
        _scale(ctx, dep, new_rs, replicas)
    elif new_count < replicas and total < replicas + surge:
        _scale(ctx, dep, new_rs, new_count + min(replicas + surge - total, replicas - new_count))
    if not any(r["spec"].get("replicas") for r in old_rs):
        return
    all_rs = [new_rs, *old_rs]
    all_pods = sum(int(r["spec"].get("replicas", 0)) for r in all_rs)
    min_available = replicas - unavailable
    new_unavailable = int(new_rs["spec"].get("replicas", 0)) - _available(new_rs)
    budget = all_pods - min_available - new_unavailable
    if budget <= 0:
        return
    for rs in old_rs:  # oldest first: scale away pods that are not available anyway
        unhealthy = int(rs["spec"].get("replicas", 0)) - _available(rs)
        if unhealthy > 0 and budget > 0:
            cut = min(unhealthy, budget)
            _scale(ctx, dep, rs, int(rs["spec"]["replicas"]) - cut)
            budget -= cut
    down = sum(_available(r) for r in all_rs) - min_available
    for rs in old_rs:
        count = int(rs["spec"].get("replicas", 0))
        if down <= 0 or count == 0:
            continue
        cut = min(count, down)
        _scale(ctx, dep, rs, count - cut)
        down -= cut


def _recreate(ctx: Ctx, dep: JSON, new_rs: JSON, old_rs: list[JSON]) -> None:
    for rs in old_rs:
        _scale(ctx, dep, rs, 0)
    if any(int((r.get("status") or {}).get("replicas", 0)) for r in old_rs):
        return
    _scale(ctx, dep, new_rs, int(dep["spec"].get("replicas", 1)))


def _cleanup(ctx: Ctx, dep: JSON, old_rs: list[JSON]) -> None:
    limit = int(dep["spec"].get("revisionHistoryLimit", 10))
    idle = [r for r in old_rs if not r["spec"].get("replicas")
            and not (r.get("status") or {}).get("replicas")]
    for rs in sorted(idle, key=revision)[: max(len(idle) - limit, 0)]:
        ctx.delete(rs)


def _update_status(ctx: Ctx, dep: JSON, new_rs: JSON | None, created: bool) -> None:
    spec, meta = dep["spec"], dep["metadata"]
    all_rs = ctx.owned(dep, "apps", "ReplicaSet")
    new = next((r for r in all_rs if new_rs and r["metadata"]["uid"] == new_rs["metadata"]["uid"]),
               None)

    def total(field: str, sets: list[JSON]) -> int:
        return sum(int((r.get("status") or {}).get(field, 0)) for r in sets)

    replicas = int(spec.get("replicas", 1))
    _, max_unavailable = surge_and_unavailable(dep)
    old_status = dep.get("status") or {}
    status: JSON = {
        "observedGeneration": meta.get("generation", 1),
        "replicas": total("replicas", all_rs),
        "updatedReplicas": total("replicas", [new]) if new else 0,
        "readyReplicas": total("readyReplicas", all_rs),
        "availableReplicas": total("availableReplicas", all_rs),
    }
    status["unavailableReplicas"] = max(replicas - status["availableReplicas"], 0)
    conditions = {c["type"]: c for c in old_status.get("conditions") or []}
    now = ctx.clock.stamp()
    if status["availableReplicas"] >= replicas - max_unavailable:
        _set(conditions, "Available", "True", "MinimumReplicasAvailable",
             "Deployment has minimum availability.", now)
    else:
        _set(conditions, "Available", "False", "MinimumReplicasUnavailable",
             "Deployment does not have minimum availability.", now)
    _progressing(ctx, dep, conditions, status, old_status, new, created, now)
    status["conditions"] = [conditions[t] for t in ("Available", "Progressing")
                            if t in conditions]
    dep["status"] = {k: v for k, v in status.items() if v or k == "observedGeneration"}
    if new is not None:
        dep["metadata"].setdefault("annotations", {})[REVISION] = str(revision(new))
    ctx.write(dep)


def _progressing(ctx: Ctx, dep: JSON, conditions: dict[str, JSON], status: JSON,
                 old: JSON, new: JSON | None, created: bool, now: str) -> None:
    spec = dep["spec"]
    replicas = int(spec.get("replicas", 1))
    name = new["metadata"]["name"] if new else ""
    current = conditions.get("Progressing")
    if spec.get("paused"):
        _set(conditions, "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused",
             now)
        return
    if current and current.get("reason") == "DeploymentPaused":
        _set(conditions, "Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed",
             now)
        return
    complete = (status["updatedReplicas"] == replicas and status["replicas"] == replicas
                and status["availableReplicas"] == replicas)
    if complete:
        _set(conditions, "Progressing", "True", "NewReplicaSetAvailable",
             f'ReplicaSet "{name}" has successfully progressed.', now)
        return
    if created:
        _set(conditions, "Progressing", "True", "NewReplicaSetCreated",
             f'Created new replica set "{name}"', now, touch=True)
        return
    moved = any(int(status.get(f, 0)) > int(old.get(f, 0))
                for f in ("updatedReplicas", "readyReplicas", "availableReplicas"))
    moved = moved or int(status.get("replicas", 0)) - int(status.get("updatedReplicas", 0)) < (
        int(old.get("replicas", 0)) - int(old.get("updatedReplicas", 0)))
    if moved or current is None or current.get("reason") == "NewReplicaSetAvailable":
        _set(conditions, "Progressing", "True", "ReplicaSetUpdated",
             f'ReplicaSet "{name}" is progressing.', now, touch=True)
        return
    deadline = spec.get("progressDeadlineSeconds")
    if deadline is None or current.get("reason") == "ProgressDeadlineExceeded":
        return
    since = parse_time(current.get("lastUpdateTime") or now)
    if (ctx.now() - since).total_seconds() > int(deadline):
        _set(conditions, "Progressing", "False", "ProgressDeadlineExceeded",
             f'ReplicaSet "{name}" has timed out progressing.', now)


def _set(conditions: dict[str, JSON], type_: str, status: str, reason: str, message: str,
         now: str, touch: bool = False) -> None:
    """Set a condition as the real helpers do: unchanged status+reason keeps timestamps
    (unless `touch`), unchanged status keeps lastTransitionTime."""
    old = conditions.get(type_)
    if old and old.get("status") == status and old.get("reason") == reason and not touch:
        old["message"] = message
        return
    conditions[type_] = {
        "type": type_, "status": status, "reason": reason, "message": message,
        "lastUpdateTime": now,
        "lastTransitionTime": old["lastTransitionTime"] if old and old.get("status") == status
        else now,
    }
