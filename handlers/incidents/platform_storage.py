"""`incident.pvc_filling` for KubePersistentVolumeFillingUp: how full the claim is and how fast
it grows (kubelet volume stats in Prometheus), its storage class and whether that class lets it
grow, and which pods write to it; the way out is expanding the claim, said in words."""

from __future__ import annotations

import json
import math
from typing import Any

from pydantic import field_validator

from bot.errors import NotFound
from bot.messages import rough_span
from bot.registry import HandlerContext, Result, handler
from handlers.incident import AlertParams, diagnosis
from handlers.incidents.platform_common import (
    app_of_pod,
    check_name,
    check_window,
    fmt_bytes,
    labels_selector,
    optional,
    prometheus_for,
    storage_api,
)

__all__ = ["PvcParams", "pvc_filling"]

GIB = 2**30
FULL = 0.97  # above this share a volume is full for practical purposes
HEADROOM_DAYS = 30  # a suggested size holds this many days of the current growth


class PvcParams(AlertParams):
    pvc: str
    window: str = "6h"  # the range the growth rate is fitted over (the alert's own is 6h)

    _pvc = field_validator("pvc")(lambda v: check_name(v, "pvc"))
    _window = field_validator("window")(check_window)


@handler("incident.pvc_filling", params=PvcParams)
async def pvc_filling(*, ctx: HandlerContext, params: PvcParams, **_: object) -> Result:
    """How full a PersistentVolumeClaim is, how fast it fills, and whether it can be expanded."""
    namespace, name = ctx.namespace, params.pvc
    try:
        pvc = await ctx.kube.call(ctx.kube.core.read_namespaced_persistent_volume_claim,
                                  name, namespace)
    except NotFound:
        return diagnosis(
            what=f"PVC {name} does not exist in {namespace}", alert=params.alert, ok=False,
            cause="the claim was deleted or renamed; the alert may be about to resolve",
        )
    class_name = pvc.spec.storage_class_name
    expandable: bool | None = None
    if class_name:
        try:
            sc = await ctx.kube.call(storage_api(ctx).read_storage_class, class_name)
            expandable = bool(sc.allow_volume_expansion)
        except NotFound:
            expandable = None
    requested = ((pvc.spec.resources.requests or {}) if pvc.spec.resources else {}).get("storage")
    bound = ((pvc.status.capacity or {}) if pvc.status else {}).get("storage")
    await ctx.progress("claim read; finding the pods that mount it")
    mounts = await _mounted_by(ctx, name)
    usage = await _usage(ctx, name, params.window)
    used, capacity, growth = usage["used"], usage["capacity"], usage["growth"]

    if used is None or not capacity:
        what = f"PVC {name} in {namespace}: no volume stats in Prometheus"
        cause = usage["problem"] or ("the kubelet reports no stats for this claim (not mounted, "
                                      "or not a filesystem volume)")
        ratio = None
    else:
        ratio = used / capacity
        what = (f"PVC {name} in {namespace} is {ratio:.0%} full "
                f"({fmt_bytes(used)} of {fmt_bytes(capacity)})")
        cause = _cause(ratio, used, capacity, growth, params.window)
    suggestion = _suggestion(name, namespace, class_name, expandable, used, capacity, growth)
    evidence = [
        ("Usage", f"{fmt_bytes(used)} of {fmt_bytes(capacity)}"
                  + (f" ({ratio:.1%})" if ratio is not None else "")),
        ("Growth", _growth_text(used, capacity, growth, params.window)),
        ("Storage class", _class_text(class_name, expandable)),
        ("Requested", f"{requested or 'unknown'} (bound capacity {bound or 'unknown'})"),
        ("Mounted by", ", ".join(m["text"] for m in mounts) or "no pod"),
        ("Suggestion", suggestion),
    ]
    apps = sorted({m["app"] for m in mounts if m["app"]})
    data: dict[str, Any] = {
        "pvc": name, "used_bytes": used, "capacity_bytes": capacity, "ratio": ratio,
        "growth_bytes_per_hour": growth * 3600 if growth is not None else None,
        "hours_to_full": _hours_to_full(used, capacity, growth),
        "storage_class": class_name, "expandable": expandable, "suggestion": suggestion,
        "pods": [m["pod"] for m in mounts],
    }
    if len(apps) == 1:
        data["app"] = apps[0]  # for follow-up buttons; absent when no configured app mounts it
    return diagnosis(what=what, cause=cause, alert=params.alert, evidence=evidence, data=data)


async def _mounted_by(ctx: HandlerContext, claim: str) -> list[dict[str, Any]]:
    pods = await ctx.kube.call(ctx.kube.core.list_namespaced_pod, ctx.namespace)
    found = []
    for pod in sorted(pods.items, key=lambda p: p.metadata.name):
        volumes = pod.spec.volumes or [] if pod.spec else []
        if not any(v.persistent_volume_claim and v.persistent_volume_claim.claim_name == claim
                   for v in volumes):
            continue
        owner, app = await app_of_pod(ctx, pod)
        text = pod.metadata.name + (f" ({owner})" if owner else "")
        found.append({"pod": pod.metadata.name, "text": text, "app": app.name if app else None})
    return found


async def _usage(ctx: HandlerContext, claim: str, window: str) -> dict[str, Any]:
    out: dict[str, Any] = {"used": None, "capacity": None, "growth": None, "problem": None}
    prometheus = prometheus_for(ctx)
    if prometheus is None:
        out["problem"] = "Prometheus is not configured (PROMETHEUS_URL), so usage is unknown"
        return out
    sel = labels_selector({"namespace": ctx.namespace, "persistentvolumeclaim": claim})
    used_q = f"kubelet_volume_stats_used_bytes{sel}"
    async with prometheus:
        out["used"] = await optional(prometheus.query(f"max({used_q})"))
        out["capacity"] = await optional(
            prometheus.query(f"max(kubelet_volume_stats_capacity_bytes{sel})"))
        # The slope of the same linear fit the alert's predict_linear makes, in bytes/s.
        out["growth"] = await optional(prometheus.query(
            f"(max(predict_linear({used_q}[{window}], 3600)) - "
            f"max(predict_linear({used_q}[{window}], 0))) / 3600"))
    if out["used"] is None and out["capacity"] is None:
        out["problem"] = "Prometheus has no kubelet_volume_stats for this claim"
    for key in ("used", "capacity", "growth"):
        if out[key] is not None and math.isnan(out[key]):
            out[key] = None
    return out


def _hours_to_full(used: float | None, capacity: float | None,
                   growth: float | None) -> float | None:
    if used is None or not capacity or not growth or growth <= 0:
        return None
    return max(0.0, capacity - used) / growth / 3600


def _cause(ratio: float, used: float, capacity: float, growth: float | None,
           window: str) -> str:
    hours = _hours_to_full(used, capacity, growth)
    if ratio >= FULL:
        if hours is None:
            return "the volume is full: writes will fail (or already do)"
        return f"the volume is full and still growing; out of space in {rough_span(hours * 3600)}"
    if hours is not None:
        return (f"steady growth of {fmt_bytes((growth or 0) * 3600)}/h over the last {window}: "
                f"full in about {rough_span(hours * 3600)}")
    return (f"usage is not growing over the last {window}; the volume filled earlier and "
            "stays high")


def _growth_text(used: float | None, capacity: float | None, growth: float | None,
                 window: str) -> str:
    if growth is None:
        return f"unknown (no usage samples over {window})"
    hours = _hours_to_full(used, capacity, growth)
    text = f"{'+' if growth >= 0 else '-'}{fmt_bytes(abs(growth) * 3600)}/h over {window}"
    return text + (f"; full in about {rough_span(hours * 3600)}" if hours is not None else "")


def _class_text(class_name: str | None, expandable: bool | None) -> str:
    if not class_name:
        return "none (statically bound volume)"
    if expandable is None:
        return f"{class_name} (the StorageClass is not found; expansion unknown)"
    return f"{class_name} (allowVolumeExpansion: {'true' if expandable else 'false'})"


def suggested_size(used: float | None, capacity: float | None, growth: float | None) -> int | None:
    """Whole GiB holding 1.5x the capacity, or a month more of the current growth."""
    if not capacity:
        return None
    target = capacity * 1.5
    if used is not None and growth and growth > 0:
        target = max(target, used + growth * 86400 * HEADROOM_DAYS)
    return max(1, math.ceil(target / GIB))


def _suggestion(name: str, namespace: str, class_name: str | None, expandable: bool | None,
                used: float | None, capacity: float | None, growth: float | None) -> str:
    size = suggested_size(used, capacity, growth)
    if expandable:
        wanted = f"{size}Gi" if size else "a larger size"
        patch = json.dumps({"spec": {"resources": {"requests": {"storage": wanted}}}},
                           separators=(",", ":"))
        return (f"expand the claim to {wanted}: kubectl -n {namespace} patch pvc {name} "
                f"-p '{patch}'")
    if expandable is False:
        return (f"storage class {class_name} does not allow expansion: free space (retention, "
                "cleanup) or move the data to a new, larger claim")
    return ("check whether the volume can be expanded (allowVolumeExpansion on its "
            "StorageClass); otherwise free space or move the data to a larger claim")
