"""The Argo Rollouts controller for `argoproj.io/v1alpha1` Rollouts with a basic canary
(no traffic routing), so the bot's canary commands meet the fields the real controller keeps.

Modelled: one ReplicaSet per pod template (`rollouts-pod-template-hash` label, owner reference,
`rollout.argoproj.io/revision` annotation, reused and re-numbered on undo); the first
template becomes stable at once; later ones walk `spec.strategy.canary.steps`: `setWeight`
scales the canary to ceil(weight% of replicas) and, once those pods are available, the stable
set down to the rest; `pause: {}` waits for a promote (`status.pauseConditions` cleared),
`pause: {duration: 10s}` for the simulated clock. After the last step the canary takes all
replicas and becomes `status.stableRS`. `status.abort: true` scales the canary to zero and
the stable set back up (phase Degraded); `status.promoteFull: true` skips the remaining steps;
`spec.paused` holds the rollout; `progressDeadlineSeconds` (600) without progress outside a
pause is Degraded (ProgressDeadlineExceeded), also for a fully promoted Rollout whose pods
lost availability, and aborts a canary with `progressDeadlineAbort`. `spec.restartAt` (what
`kubectl argo rollouts restart` sets) evicts the pods created before it once that time has
come, stable set first, as few at a time as maxUnavailable allows (at least one), and then
records it in `status.restartedAt`. Status carries `HPAReplicas` and the `selector` string the
CRD's scale subresource serves.
Analysis, experiment and traffic-routing steps pass at once; blue-green and workloadRef are
not modelled, and Rollouts without a selector and pod template are left untouched.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

from . import selectors
from .clock import parse_time
from .controllers import BUILTINS, Ctx, owner_ref
from .defaults import default_pod_spec
from .deployments import surge_and_unavailable, template_hash
from .replicasets import pod_available
from .store import clone

JSON = dict[str, Any]
GROUP, KIND = "argoproj.io", "Rollout"
HASH_LABEL = "rollouts-pod-template-hash"
REVISION = "rollout.argoproj.io/revision"
PAUSE_STEP = "CanaryPauseStep"
ABORTED = "RolloutAborted"
TIMED_OUT = "ProgressDeadlineExceeded"
COMPONENT = "rollouts-controller"
_DURATION = re.compile(r"^(\d+)(s|m|h)?$")
_UNIT = {"s": 1, "m": 60, "h": 3600, None: 1}


def pod_hash(template: JSON) -> str:
    """The template's hash, computed on the defaulted template without the hash label, so a
    template copied back from a ReplicaSet (undo) hashes as the original did."""
    clean = clone(template)
    labels = (clean.setdefault("metadata", {}) or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    if isinstance(clean.get("spec"), dict):
        default_pod_spec(clean["spec"])
    return template_hash(clean)


def revision(rs: JSON) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def canary_steps(ro: JSON) -> list[JSON]:
    canary = ((ro.get("spec") or {}).get("strategy") or {}).get("canary") or {}
    return [s for s in canary.get("steps") or [] if isinstance(s, dict)]


def step_weight(steps: list[JSON], index: int) -> int:
    """The canary weight in force at step `index` (100 once every step is done)."""
    if index >= len(steps):
        return 100
    for step in reversed(steps[: index + 1]):
        if "setWeight" in step:
            return int(step["setWeight"])
    return 0


def pause_seconds(pause: Any) -> float | None:
    """`pause: {duration: 10s}` (or 30, "1m", "1h") in seconds; None for an indefinite pause."""
    duration = pause.get("duration") if isinstance(pause, dict) else None
    if duration is None:
        return None
    match = _DURATION.match(str(duration).strip())
    if not match:
        return None
    return int(match.group(1)) * _UNIT[match.group(2)]


@BUILTINS.for_kind(GROUP, KIND, name="rollouts-controller", order=15)
def reconcile_rollout(ctx: Ctx, ro: JSON) -> None:
    spec = ro.get("spec") or {}
    template, selector = spec.get("template"), spec.get("selector")
    if not (isinstance(template, dict) and isinstance(template.get("spec"), dict)
            and isinstance(selector, dict)):
        return
    ctx.adopt(ro, "apps", "ReplicaSet")
    all_rs = sorted(ctx.owned(ro, "apps", "ReplicaSet"), key=revision)
    old_status: JSON = clone(ro.get("status") or {})
    status: JSON = clone(old_status)
    steps = canary_steps(ro)
    desired = pod_hash(template)
    by_hash = {(r["metadata"].get("labels") or {}).get(HASH_LABEL): r for r in all_rs}
    canary = by_hash.get(desired)
    if canary is None:
        canary = _create_rs(ctx, ro, desired, all_rs)
        by_hash[desired] = canary
    if status.get("currentPodHash") != desired:
        canary = _new_update(ctx, ro, status, canary, list(by_hash.values()), steps)
    stable_hash = status.get("stableRS")
    if not stable_hash or stable_hash not in by_hash:  # the first template is stable at once
        stable_hash = status["stableRS"] = desired
    stable = by_hash[stable_hash]
    others = [r for h, r in by_hash.items() if h not in (desired, stable_hash)]
    replicas = int(spec.get("replicas", 1))
    if desired == stable_hash:
        _promoted(ctx, ro, status, stable, steps, replicas)
    elif status.get("abort"):
        _aborted(ctx, ro, status, canary, stable, replicas)
    else:
        _canary(ctx, ro, status, canary, stable, steps, replicas)
    for rs in others:  # a basic canary keeps only the stable and the newest set
        _scale(ctx, ro, rs, 0)
    order = [stable] + [r for r in (canary, *others)  # the restarter's order: stable first
                        if r["metadata"]["name"] != stable["metadata"]["name"]]
    _restart_pods(ctx, ro, status, order, replicas)
    _cleanup(ctx, ro, others, int(spec.get("revisionHistoryLimit", 10)))
    _update_status(ctx, ro, status, old_status, desired, steps, replicas)


def _create_rs(ctx: Ctx, ro: JSON, pod_hash_: str, all_rs: list[JSON]) -> JSON:
    meta, spec = ro["metadata"], ro["spec"]
    template = clone(spec["template"])
    template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = pod_hash_
    selector = clone(spec["selector"])
    selector.setdefault("matchLabels", {})[HASH_LABEL] = pod_hash_
    number = max((revision(r) for r in all_rs), default=0) + 1
    rs = {
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": f"{meta['name']}-{pod_hash_}", "namespace": meta["namespace"],
                     "labels": dict(template["metadata"]["labels"]),
                     "annotations": {REVISION: str(number)},
                     "ownerReferences": [owner_ref(ro)]},
        "spec": {"replicas": 0, "minReadySeconds": spec.get("minReadySeconds", 0),
                 "selector": selector, "template": template},
    }
    return ctx.create(rs)


def _new_update(ctx: Ctx, ro: JSON, status: JSON, canary: JSON, all_rs: list[JSON],
                steps: list[JSON]) -> JSON:
    """A new pod template: restart the steps; a reused set (undo) moves to the top revision."""
    top = max((revision(r) for r in all_rs), default=0)
    if revision(canary) < top:
        canary["metadata"].setdefault("annotations", {})[REVISION] = str(top + 1)
        canary = ctx.write(canary)
    status["currentPodHash"] = (canary["metadata"].get("labels") or {}).get(HASH_LABEL)
    for key in ("pauseConditions", "controllerPause", "abort", "abortedAt", "promoteFull"):
        status.pop(key, None)
    if steps:
        status["currentStepIndex"] = 0
    if status.get("stableRS"):
        ctx.event(ro, "Normal", "RolloutUpdated",
                  f"Rollout updated to revision {revision(canary)}", component=COMPONENT)
    return canary


def _promoted(ctx: Ctx, ro: JSON, status: JSON, stable: JSON, steps: list[JSON],
              replicas: int) -> None:
    for key in ("pauseConditions", "controllerPause", "abort", "abortedAt", "promoteFull"):
        status.pop(key, None)
    if steps:
        status["currentStepIndex"] = len(steps)
    _scale(ctx, ro, stable, replicas)


def _aborted(ctx: Ctx, ro: JSON, status: JSON, canary: JSON, stable: JSON,
             replicas: int) -> None:
    if not status.get("abortedAt"):
        status["abortedAt"] = ctx.clock.stamp()
        ctx.event(ro, "Warning", ABORTED,
                  f"Rollout aborted update to revision {revision(canary)}", component=COMPONENT)
    for key in ("pauseConditions", "controllerPause", "promoteFull"):
        status.pop(key, None)
    if "currentStepIndex" in status:
        status["currentStepIndex"] = 0
    _scale(ctx, ro, stable, replicas)
    _scale(ctx, ro, canary, 0)


def _canary(ctx: Ctx, ro: JSON, status: JSON, canary: JSON, stable: JSON, steps: list[JSON],
            replicas: int) -> None:
    if status.get("promoteFull"):
        status["currentStepIndex"] = len(steps)
        status.pop("pauseConditions", None)
        status.pop("controllerPause", None)
    index = int(status.get("currentStepIndex", 0)) if steps else 0
    if not (ro["spec"].get("paused")):
        index = _run_steps(ctx, ro, status, steps, index, canary, stable, replicas)
    if steps:
        status["currentStepIndex"] = index
    target = min(replicas, math.ceil(replicas * step_weight(steps, index) / 100))
    _scale(ctx, ro, canary, target)
    rest = replicas - target
    if int(stable["spec"].get("replicas", 0)) < rest or _available(canary) >= target:
        _scale(ctx, ro, stable, rest)
    if index >= len(steps) and _available(canary) >= replicas and rest == 0:
        status["stableRS"] = status["currentPodHash"]
        status.pop("promoteFull", None)
        ctx.event(ro, "Normal", "RolloutCompleted",
                  f"Rollout completed update to revision {revision(canary)} "
                  f"({status['currentPodHash']}): Rollout is Healthy", component=COMPONENT)


def _run_steps(ctx: Ctx, ro: JSON, status: JSON, steps: list[JSON], index: int, canary: JSON,
               stable: JSON, replicas: int) -> int:
    """Walk the steps as far as they are satisfied; returns the step index now in force."""
    while index < len(steps):
        step = steps[index]
        if "setWeight" in step:
            target = min(replicas, math.ceil(replicas * int(step["setWeight"]) / 100))
            if not (int(canary["spec"].get("replicas", 0)) == target
                    and _available(canary) >= target
                    and int(stable["spec"].get("replicas", 0)) == replicas - target):
                return index
        elif "pause" in step:
            conditions = status.get("pauseConditions") or []
            if not conditions and not status.get("controllerPause"):
                status["pauseConditions"] = [{"reason": PAUSE_STEP,
                                              "startTime": ctx.clock.stamp()}]
                status["controllerPause"] = True
                ctx.event(ro, "Normal", "RolloutPaused", f"Rollout is paused ({PAUSE_STEP})",
                          component=COMPONENT)
                return index
            if conditions:
                seconds = pause_seconds(step["pause"])
                started = parse_time(conditions[0].get("startTime") or ctx.clock.stamp())
                if seconds is None or (ctx.now() - started).total_seconds() < seconds:
                    return index
                status.pop("pauseConditions", None)
            status.pop("controllerPause", None)  # promoted (conditions cleared) or timed out
            ctx.event(ro, "Normal", "RolloutResumed", "Rollout is resumed",
                      component=COMPONENT)
        index += 1
        ctx.event(ro, "Normal", "RolloutStepCompleted",
                  f"Rollout step {index}/{len(steps)} completed ({_describe(step)})",
                  component=COMPONENT)
    return index


def _restart_pods(ctx: Ctx, ro: JSON, status: JSON, sets: list[JSON], replicas: int) -> None:
    """The controller's pod restarter: once `spec.restartAt` has come and is newer than
    `status.restartedAt`, evict (here: delete) pods created before it, in the order of `sets`,
    only as many as keep max(replicas, pods wanted) - max(maxUnavailable, 1) available. The
    ReplicaSets recreate them; when no old pod is left unevicted, restartedAt is recorded."""
    restart_at = ro["spec"].get("restartAt")
    if not restart_at or parse_time(restart_at) > ctx.now():
        return
    done = status.get("restartedAt")
    if done and parse_time(done) >= parse_time(restart_at):
        return
    min_ready = int(ro["spec"].get("minReadySeconds", 0))
    pods = [pod for rs in sets for pod in sorted(ctx.owned(rs, "", "Pod"),
                                                 key=lambda p: p["metadata"]["name"])]
    wanted = sum(int(rs["spec"].get("replicas", 0)) for rs in sets)
    canary = ((ro["spec"].get("strategy") or {}).get("canary") or {})
    limits = {k: canary[k] for k in ("maxSurge", "maxUnavailable") if k in canary}
    _, unavailable = surge_and_unavailable(
        {"spec": {"replicas": replicas, "strategy": {"rollingUpdate": limits}}})
    budget = sum(1 for p in pods if pod_available(ctx, p, min_ready)) \
        - (max(replicas, wanted) - max(unavailable, 1))
    stale = [p for p in pods
             if parse_time(p["metadata"]["creationTimestamp"]) < parse_time(restart_at)]
    for pod in stale[: max(budget, 0)]:
        ctx.delete(pod)
    if len(stale) <= max(budget, 0):
        status["restartedAt"] = restart_at


def _describe(step: JSON) -> str:
    if "setWeight" in step:
        return f"setWeight: {step['setWeight']}"
    if "pause" in step:
        seconds = pause_seconds(step["pause"])
        return "pause" if seconds is None else f"pause: {int(seconds)}s"
    return next(iter(step), "step")


def _available(rs: JSON) -> int:
    return int((rs.get("status") or {}).get("availableReplicas", 0))


def _scale(ctx: Ctx, ro: JSON, rs: JSON, replicas: int) -> None:
    before = int(rs["spec"].get("replicas", 0))
    if before == replicas:
        return
    rs["spec"]["replicas"] = replicas
    rs.update(ctx.write(rs))
    direction = "up" if replicas > before else "down"
    ctx.event(ro, "Normal", "ScalingReplicaSet",
              f"Scaled {direction} ReplicaSet {rs['metadata']['name']} (revision "
              f"{revision(rs)}) from {before} to {replicas}", component=COMPONENT)


def _cleanup(ctx: Ctx, ro: JSON, old: list[JSON], limit: int) -> None:
    idle = [r for r in old if not r["spec"].get("replicas")
            and not (r.get("status") or {}).get("replicas")]
    for rs in sorted(idle, key=revision)[: max(len(idle) - limit, 0)]:
        ctx.delete(rs)


def _update_status(ctx: Ctx, ro: JSON, status: JSON, old: JSON, desired: str,
                   steps: list[JSON], replicas: int) -> None:
    owned = ctx.owned(ro, "apps", "ReplicaSet")
    canary = next((r for r in owned
                   if (r["metadata"].get("labels") or {}).get(HASH_LABEL) == desired), None)

    def total(field: str, sets: list[JSON]) -> int:
        return sum(int((r.get("status") or {}).get(field, 0)) for r in sets)

    status.update({
        "observedGeneration": str(ro["metadata"].get("generation", 1)),
        "replicas": total("replicas", owned),
        "updatedReplicas": total("replicas", [canary]) if canary else 0,
        "readyReplicas": total("readyReplicas", owned),
        "availableReplicas": total("availableReplicas", owned),
        "currentPodHash": desired,
        "HPAReplicas": total("replicas", owned),
        "selector": selectors.to_string(ro["spec"]["selector"]),
        "canary": status.get("canary") or {},
    })
    if steps:
        status["currentStepHash"] = hashlib.sha256(
            json.dumps(steps, sort_keys=True).encode()).hexdigest()[:10]
    conditions = {c["type"]: c for c in status.get("conditions") or []}
    _conditions(ctx, ro, status, old, conditions, replicas)
    status["conditions"] = [conditions[t] for t in ("Available", "Progressing")
                            if t in conditions]
    status["phase"], status["message"] = _phase(ro, status, replicas)
    ro["status"] = {k: v for k, v in status.items()
                    if v or k in ("observedGeneration", "canary", "currentStepIndex")}
    if canary is not None:
        ro["metadata"].setdefault("annotations", {})[REVISION] = str(revision(canary))
    ctx.write(ro)


def _conditions(ctx: Ctx, ro: JSON, status: JSON, old: JSON, conditions: dict[str, JSON],
                replicas: int) -> None:
    now = ctx.clock.stamp()
    if status["availableReplicas"] >= replicas:
        _set(conditions, "Available", "True", "AvailableReason",
             "Rollout has minimum availability", now)
    else:
        _set(conditions, "Available", "False", "AvailableReason",
             "Rollout does not have minimum availability", now)
    name = f"{ro['metadata']['name']}-{status['currentPodHash']}"
    current = conditions.get("Progressing")
    if status.get("abort"):
        _set(conditions, "Progressing", "False", ABORTED, _abort_message(ctx, ro, status), now)
        return
    promoted = status.get("stableRS") == status["currentPodHash"]
    if promoted and status["availableReplicas"] >= replicas and status["replicas"] == replicas:
        _set(conditions, "Progressing", "True", "NewReplicaSetAvailable",
             "Rollout is healthy", now)
        return
    # Not complete, even when fully promoted (its pods lost availability): as the real
    # controller does, progress is tracked and a stall past the deadline is Degraded.
    if ro["spec"].get("paused") or status.get("pauseConditions"):
        _set(conditions, "Progressing", "Unknown", "RolloutPaused", "Rollout is paused", now)
        return
    moved = (old.get("currentPodHash") != status["currentPodHash"]
             or old.get("currentStepIndex") != status.get("currentStepIndex")
             or any(int(status.get(f, 0)) != int(old.get(f, 0))
                    for f in ("updatedReplicas", "readyReplicas", "availableReplicas",
                              "replicas")))
    if moved or current is None or current.get("reason") in (
            "RolloutPaused", "NewReplicaSetAvailable", ABORTED):
        reason = "RolloutResumed" if current and current.get("reason") == "RolloutPaused" \
            else "ReplicaSetUpdated"
        _set(conditions, "Progressing", "True", reason, f'ReplicaSet "{name}" is progressing.',
             now, touch=True)
        return
    if current.get("reason") == TIMED_OUT:
        return
    deadline = int(ro["spec"].get("progressDeadlineSeconds", 600))
    since = parse_time(current.get("lastUpdateTime") or now)
    if (ctx.now() - since).total_seconds() > deadline:
        _set(conditions, "Progressing", "False", TIMED_OUT,
             f'ReplicaSet "{name}" has timed out progressing.', now)
        ctx.event(ro, "Warning", TIMED_OUT, f'ReplicaSet "{name}" has timed out progressing.',
                  component=COMPONENT)
        if ro["spec"].get("progressDeadlineAbort") and not promoted:
            status["abort"] = True


def _abort_message(ctx: Ctx, ro: JSON, status: JSON) -> str:
    owned = ctx.owned(ro, "apps", "ReplicaSet")
    canary = next((r for r in owned if (r["metadata"].get("labels") or {}).get(HASH_LABEL)
                   == status["currentPodHash"]), None)
    return f"Rollout aborted update to revision {revision(canary) if canary else '?'}"


def _phase(ro: JSON, status: JSON, replicas: int) -> tuple[str, str]:
    """As the controller's CalculateRolloutPhase does it for a basic canary."""
    for cond in status.get("conditions") or []:
        if cond.get("reason") in (ABORTED, TIMED_OUT):
            return "Degraded", f"{cond['reason']}: {cond.get('message', '')}"
    if ro["spec"].get("paused"):
        return "Paused", "manually paused"
    for pause in status.get("pauseConditions") or []:
        return "Paused", str(pause.get("reason", ""))
    if status["updatedReplicas"] < replicas:
        return "Progressing", "more replicas need to be updated"
    if status["availableReplicas"] < status["updatedReplicas"]:
        return "Progressing", "updated replicas are still becoming available"
    if status["replicas"] > status["updatedReplicas"]:
        return "Progressing", "old replicas are pending termination"
    if status.get("stableRS") != status["currentPodHash"]:
        return "Progressing", "waiting for all steps to complete"
    return "Healthy", ""


def _set(conditions: dict[str, JSON], type_: str, status: str, reason: str, message: str,
         now: str, touch: bool = False) -> None:
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
