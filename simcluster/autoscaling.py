"""The simulated horizontal pod autoscaler: it reads the target's scale, a CPU utilization the
test scripts (there is no metrics server), and scales the target within min/max replicas,
reporting status and conditions the way kube-controller-manager's HPA controller words them."""

from __future__ import annotations

import math
from typing import Any

from . import hpa
from .behaviours import workloads_of
from .controllers import BUILTINS, Ctx
from .store import clone

JSON = dict[str, Any]
COMPONENT = "horizontal-pod-autoscaler"
TOLERANCE = 0.1  # --horizontal-pod-autoscaler-tolerance
METRIC_NAME = "cpu resource utilization (percentage of request)"


@BUILTINS.for_kind(hpa.GROUP, hpa.KIND, name="horizontal-pod-autoscaler", order=8)
def reconcile_hpa(ctx: Ctx, obj: JSON) -> None:
    spec, meta = obj["spec"], obj["metadata"]
    namespace = meta["namespace"]
    status = clone(obj.get("status") or {})
    before = clone(status)
    conditions = {c["type"]: c for c in status.get("conditions") or []}
    now = ctx.clock.stamp()

    def condition(type_: str, state: str, reason: str, message: str) -> None:
        old = conditions.get(type_)
        since = old["lastTransitionTime"] if old and old.get("status") == state else now
        conditions[type_] = {"type": type_, "status": state, "lastTransitionTime": since,
                             "reason": reason, "message": message}

    ref = spec["scaleTargetRef"]
    target = _target(ctx, namespace, ref)
    if target is None:
        group = str(ref.get("apiVersion", "")).rpartition("/")[0]
        rtype = ctx.types.by_kind(group, ref.get("kind", ""))
        plural = rtype.plural if rtype else str(ref.get("kind", "")).lower() + "s"
        what = f"{plural}/scale.{group}" if group else f"{plural}/scale"
        message = (f"the HPA controller was unable to get the target's current scale: "
                   f'{what} "{ref.get("name")}" not found')
        if (conditions.get("AbleToScale") or {}).get("status") != "False":
            ctx.event(obj, "Warning", "FailedGetScale", message, component=COMPONENT)
        condition("AbleToScale", "False", "FailedGetScale", message)
        _finish(ctx, obj, status, before, conditions)
        return

    current = int((target.get("spec") or {}).get("replicas", 1))
    low, high = int(spec.get("minReplicas", 1)), int(spec["maxReplicas"])
    condition("AbleToScale", "True", "SucceededGetScale",
              "the HPA controller was able to get the target's current scale")
    status.pop("currentMetrics", None)
    reason = ""
    if current == 0 and low != 0:
        desired = 0
        condition("ScalingActive", "False", "ScalingDisabled",
                  "scaling is disabled since the replica count of the target is zero")
    elif current > high:
        desired, reason = high, "Current number of replicas above Spec.MaxReplicas"
    elif current < low:
        desired, reason = low, "Current number of replicas below Spec.MinReplicas"
    else:
        proposal, used, failure = _from_metrics(ctx, obj, target, current)
        if failure is not None:
            if (conditions.get("ScalingActive") or {}).get("status") != "False":
                ctx.event(obj, "Warning", "FailedGetResourceMetric", failure,
                          component=COMPONENT)
            condition("ScalingActive", "False", "FailedGetResourceMetric", failure)
            status["currentReplicas"] = current  # desiredReplicas stays as last computed
            _finish(ctx, obj, status, before, conditions)
            return
        assert proposal is not None and used is not None
        status["currentMetrics"] = [used]
        condition("ScalingActive", "True", "ValidMetricFound",
                  f"the HPA was able to successfully calculate a replica count from "
                  f"{METRIC_NAME}")
        if proposal > high:
            condition("ScalingLimited", "True", "TooManyReplicas",
                      "the desired replica count is more than the maximum replica count")
        elif proposal < low:
            condition("ScalingLimited", "True", "TooFewReplicas",
                      "the desired replica count is less than the minimum replica count")
        else:
            condition("ScalingLimited", "False", "DesiredWithinRange",
                      "the desired count is within the acceptable range")
        desired = min(max(proposal, low), high)
        condition("AbleToScale", "True", "ReadyForNewScale",
                  "recommended size matches current size")
        above = desired > current
        reason = f"{METRIC_NAME} {'above' if above else 'below'} target"
    if desired != current:
        target["spec"]["replicas"] = desired
        ctx.write(target)
        condition("AbleToScale", "True", "SucceededRescale",
                  f"the HPA controller was able to update the target scale to {desired}")
        ctx.event(obj, "Normal", "SuccessfulRescale", f"New size: {desired}; reason: {reason}",
                  component=COMPONENT)
        status["lastScaleTime"] = now
    status["currentReplicas"] = current
    status["desiredReplicas"] = desired
    _finish(ctx, obj, status, before, conditions)


def _target(ctx: Ctx, namespace: str, ref: JSON) -> JSON | None:
    group = str(ref.get("apiVersion", "")).rpartition("/")[0]
    rtype = ctx.types.by_kind(group, str(ref.get("kind", "")))
    if rtype is None or not rtype.scale_subresource:
        return None
    return ctx.api.store.get(rtype, namespace, str(ref.get("name", "")))


def _from_metrics(ctx: Ctx, obj: JSON, target: JSON, current: int
                  ) -> tuple[int | None, JSON | None, str | None]:
    """(proposed replicas, the metric status, None) or (None, None, why there is none)."""
    metrics = obj["spec"].get("metrics") or []
    cpu = next((m for m in metrics if hpa.is_cpu_utilization(m)), None)
    if cpu is None:
        kinds = ", ".join(sorted({str(m.get("type")) for m in metrics})) or "none"
        return None, None, (f"the simulated cluster computes only CPU utilization metrics; "
                            f"this HPA has: {kinds}")
    namespace, name = obj["metadata"]["namespace"], target["metadata"]["name"]
    pod = {"metadata": {"name": name, "namespace": namespace,
                        "ownerReferences": target["metadata"].get("ownerReferences") or []}}
    names = workloads_of(pod, lambda kind, ns, owner: _owner(ctx, kind, ns, owner))
    used = ctx.scripts.cpu_utilization_for(namespace, names)
    if used is None:
        return None, None, ("failed to get cpu utilization: unable to get metrics for resource "
                            "cpu: no metrics returned from resource metrics API")
    template = ((target.get("spec") or {}).get("template") or {}).get("spec") or {}
    requests = [_millicores(((c.get("resources") or {}).get("requests") or {}).get("cpu"))
                for c in template.get("containers") or []]
    if not requests or any(r is None for r in requests):
        return None, None, "failed to get cpu utilization: missing request for cpu"
    request = sum(r for r in requests if r is not None)
    wanted = int(cpu["resource"]["target"]["averageUtilization"])
    ratio = used / wanted if wanted else 1.0
    proposal = current if abs(ratio - 1.0) <= TOLERANCE else math.ceil(ratio * current)
    metric = {"type": "Resource", "resource": {"name": "cpu", "current": {
        "averageUtilization": used, "averageValue": f"{request * used // 100}m"}}}
    return proposal, metric, None


def _owner(ctx: Ctx, kind: str, namespace: str, name: str) -> JSON | None:
    rtype = ctx.types.by_kind("apps", kind)
    return ctx.api.store.get(rtype, namespace, name) if rtype is not None else None


def _millicores(value: Any) -> int | None:
    if value is None:
        return None
    text = str(value).strip()
    try:
        if text.endswith("m"):
            return int(float(text[:-1]))
        return int(float(text) * 1000)
    except ValueError:
        return None


def _finish(ctx: Ctx, obj: JSON, status: JSON, before: JSON, conditions: dict[str, JSON]
            ) -> None:
    order = ("AbleToScale", "ScalingActive", "ScalingLimited")
    status["conditions"] = [conditions[t] for t in order if t in conditions]
    if status != before:
        obj["status"] = status
        ctx.write(obj)
