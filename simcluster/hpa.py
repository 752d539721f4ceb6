"""HorizontalPodAutoscaler as the API server keeps it: stored as autoscaling/v2, served as v2 and
as v1 through conversion, defaulted and validated on every write.

v1 has room for one metric (CPU utilization); the rest of a v2 object travels in v1 annotations,
as the real conversion does, so a v1 read-modify-write keeps what only v2 can say.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import bad_request, invalid
from .store import clone

JSON = dict[str, Any]
GROUP = "autoscaling"
KIND = "HorizontalPodAutoscaler"
STORAGE_VERSION = "v2"
# The annotations autoscaling/v1 uses for what its schema cannot hold.
METRICS = "autoscaling.alpha.kubernetes.io/metrics"
CURRENT_METRICS = "autoscaling.alpha.kubernetes.io/current-metrics"
CONDITIONS = "autoscaling.alpha.kubernetes.io/conditions"
BEHAVIOR = "autoscaling.alpha.kubernetes.io/behavior"
DEFAULT_CPU_UTILIZATION = 80
METRIC_TYPES = ("Object", "Pods", "Resource", "ContainerResource", "External")
TARGET_TYPES = ("Utilization", "Value", "AverageValue")


def cpu_metric(utilization: int) -> JSON:
    return {"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": utilization}}}


def is_cpu_utilization(metric: JSON) -> bool:
    resource = metric.get("resource") or {}
    target = resource.get("target") or {}
    return (metric.get("type") == "Resource" and resource.get("name") == "cpu"
            and target.get("type") == "Utilization" and "averageUtilization" in target)


# -- conversion ---------------------------------------------------------------------------------


def convert(obj: JSON, version: str) -> JSON:
    """`obj` (v1 or v2) as `version`; the input is not changed."""
    current = str(obj.get("apiVersion") or "").rpartition("/")[2]
    if current == version:
        return clone(obj)
    if (current, version) == ("v1", "v2"):
        return _v1_to_v2(obj)
    if (current, version) == ("v2", "v1"):
        return _v2_to_v1(obj)
    raise bad_request(f"cannot convert {KIND} from {current or 'unknown'} to {version}")


def _v2_to_v1(obj: JSON) -> JSON:
    out = clone(obj)
    out["apiVersion"] = f"{GROUP}/v1"
    meta = out.setdefault("metadata", {})
    annotations = dict(meta.get("annotations") or {})
    spec = out.pop("spec", None)
    if isinstance(spec, dict):
        v1spec = {k: spec[k] for k in ("scaleTargetRef", "minReplicas", "maxReplicas")
                  if k in spec}
        others = []
        for metric in spec.get("metrics") or []:
            if is_cpu_utilization(metric) and "targetCPUUtilizationPercentage" not in v1spec:
                v1spec["targetCPUUtilizationPercentage"] = (
                    metric["resource"]["target"]["averageUtilization"])
            else:
                others.append(metric)
        if others:
            annotations[METRICS] = json.dumps(others, sort_keys=True)
        if spec.get("behavior"):
            annotations[BEHAVIOR] = json.dumps(spec["behavior"], sort_keys=True)
        out["spec"] = v1spec
    status = out.pop("status", None)
    if isinstance(status, dict):
        v1status = {k: status[k] for k in ("observedGeneration", "lastScaleTime",
                                           "currentReplicas", "desiredReplicas") if k in status}
        v1status.setdefault("currentReplicas", 0)  # both are required in v1
        v1status.setdefault("desiredReplicas", 0)
        current_others = []
        for metric in status.get("currentMetrics") or []:
            resource = metric.get("resource") or {}
            used = (resource.get("current") or {}).get("averageUtilization")
            if (metric.get("type") == "Resource" and resource.get("name") == "cpu"
                    and used is not None and "currentCPUUtilizationPercentage" not in v1status):
                v1status["currentCPUUtilizationPercentage"] = used
            else:
                current_others.append(metric)
        if current_others:
            annotations[CURRENT_METRICS] = json.dumps(current_others, sort_keys=True)
        if status.get("conditions"):
            annotations[CONDITIONS] = json.dumps(status["conditions"], sort_keys=True)
        out["status"] = v1status
    if annotations:
        meta["annotations"] = annotations
    return out


def _v1_to_v2(obj: JSON) -> JSON:
    out = clone(obj)
    out["apiVersion"] = f"{GROUP}/{STORAGE_VERSION}"
    meta = out.setdefault("metadata", {})
    annotations = dict(meta.get("annotations") or {})
    extra_metrics = _annotation_list(annotations.pop(METRICS, None), METRICS)
    behavior = _annotation_json(annotations.pop(BEHAVIOR, None), BEHAVIOR)
    current_extra = _annotation_list(annotations.pop(CURRENT_METRICS, None), CURRENT_METRICS)
    conditions = _annotation_list(annotations.pop(CONDITIONS, None), CONDITIONS)
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    spec = out.pop("spec", None)
    if isinstance(spec, dict):
        v2spec = {k: spec[k] for k in ("scaleTargetRef", "minReplicas", "maxReplicas")
                  if k in spec}
        metrics = []
        if spec.get("targetCPUUtilizationPercentage") is not None:
            metrics.append(cpu_metric(spec["targetCPUUtilizationPercentage"]))
        metrics += extra_metrics
        if metrics:
            v2spec["metrics"] = metrics
        if behavior:
            v2spec["behavior"] = behavior
        out["spec"] = v2spec
    status = out.pop("status", None)
    if isinstance(status, dict):
        v2status = {k: status[k] for k in ("observedGeneration", "lastScaleTime",
                                           "currentReplicas", "desiredReplicas") if k in status}
        current = []
        if status.get("currentCPUUtilizationPercentage") is not None:
            current.append({"type": "Resource", "resource": {"name": "cpu", "current": {
                "averageUtilization": status["currentCPUUtilizationPercentage"]}}})
        current += current_extra
        if current:
            v2status["currentMetrics"] = current
        if conditions:
            v2status["conditions"] = conditions
        out["status"] = v2status
    return out


def _annotation_json(text: str | None, name: str) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise bad_request(f"annotation {name}: invalid JSON: {exc}") from exc


def _annotation_list(text: str | None, name: str) -> list[JSON]:
    value = _annotation_json(text, name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise bad_request(f"annotation {name}: must be a JSON list")
    return value


# -- defaulting and validation (of the stored, v2 form) ---------------------------------------


def apply_defaults(obj: JSON) -> None:
    # desiredReplicas has no omitempty in the Go types: even a new HPA reports 0.
    obj.setdefault("status", {}).setdefault("desiredReplicas", 0)
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    spec.setdefault("minReplicas", 1)
    if not spec.get("metrics"):
        spec["metrics"] = [cpu_metric(DEFAULT_CPU_UTILIZATION)]
    behavior = spec.get("behavior")
    if isinstance(behavior, dict):
        up = behavior.setdefault("scaleUp", {})
        up.setdefault("stabilizationWindowSeconds", 0)
        up.setdefault("selectPolicy", "Max")
        up.setdefault("policies", [{"type": "Pods", "value": 4, "periodSeconds": 15},
                                   {"type": "Percent", "value": 100, "periodSeconds": 15}])
        down = behavior.setdefault("scaleDown", {})
        down.setdefault("stabilizationWindowSeconds", 300)
        down.setdefault("selectPolicy", "Max")
        down.setdefault("policies", [{"type": "Percent", "value": 100, "periodSeconds": 15}])


def validate(obj: JSON) -> None:
    name = str((obj.get("metadata") or {}).get("name", ""))
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise invalid(KIND, GROUP, name, "spec", None, "spec is required")
    ref = spec.get("scaleTargetRef")
    if not isinstance(ref, dict):
        raise invalid(KIND, GROUP, name, "spec.scaleTargetRef", None, "Required value")
    for key in ("kind", "name"):
        if not ref.get(key):
            raise invalid(KIND, GROUP, name, f"spec.scaleTargetRef.{key}", None,
                          "Required value")
    low, high = spec.get("minReplicas", 1), spec.get("maxReplicas")
    if not isinstance(low, int) or isinstance(low, bool) or low < 1:
        raise invalid(KIND, GROUP, name, "spec.minReplicas", low,
                      "must be greater than or equal to 1")
    if not isinstance(high, int) or isinstance(high, bool) or high < 1:
        raise invalid(KIND, GROUP, name, "spec.maxReplicas", high,
                      "must be greater than 0")
    if high < low:
        raise invalid(KIND, GROUP, name, "spec.maxReplicas", high,
                      "must be greater than or equal to `minReplicas`")
    for index, metric in enumerate(spec.get("metrics") or []):
        where = f"spec.metrics[{index}]"
        kind = metric.get("type") if isinstance(metric, dict) else None
        if kind not in METRIC_TYPES:
            raise invalid(KIND, GROUP, name, f"{where}.type", kind,
                          "must be one of " + ", ".join(f'"{t}"' for t in METRIC_TYPES))
        assert isinstance(metric, dict)
        source = metric.get(kind[:1].lower() + kind[1:])
        target = (source or {}).get("target") if isinstance(source, dict) else None
        if not isinstance(target, dict) or target.get("type") not in TARGET_TYPES:
            raise invalid(KIND, GROUP, name, f"{where}.target.type",
                          (target or {}).get("type") if isinstance(target, dict) else None,
                          "must be one of " + ", ".join(f'"{t}"' for t in TARGET_TYPES))
