"""Defaulting and the basic validation the API server applies on every write, so objects
read back look like a real cluster's (strategy, imagePullPolicy, ...) and bad specs get 422."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from . import hpa, platform_kinds, selectors
from .errors import invalid
from .resources import ResourceType

JSON = dict[str, Any]
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
WORKLOADS = {"Deployment", "ReplicaSet", "StatefulSet"}


def apply_defaults(rtype: ResourceType, obj: JSON) -> None:
    kind = rtype.kind
    spec = obj.get("spec")
    if kind == "Namespace":
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj.setdefault("status", {}).setdefault("phase", "Active")
        labels = obj["metadata"].setdefault("labels", {})
        labels["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
    elif kind in WORKLOADS and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        if kind == "Deployment":
            spec.setdefault("progressDeadlineSeconds", 600)
            strategy = spec.setdefault("strategy", {})
            strategy.setdefault("type", "RollingUpdate")
            if strategy["type"] == "RollingUpdate":
                rolling = strategy.setdefault("rollingUpdate", {})
                rolling.setdefault("maxSurge", "25%")
                rolling.setdefault("maxUnavailable", "25%")
        elif kind == "StatefulSet":
            spec.setdefault("podManagementPolicy", "OrderedReady")
            update = spec.setdefault("updateStrategy", {"type": "RollingUpdate"})
            if update.get("type") == "RollingUpdate":
                update.setdefault("rollingUpdate", {}).setdefault("partition", 0)
            spec.setdefault("persistentVolumeClaimRetentionPolicy",
                            {"whenDeleted": "Retain", "whenScaled": "Retain"})
        elif kind == "ReplicaSet":
            spec.pop("revisionHistoryLimit", None)
        template = spec.setdefault("template", {})
        template.setdefault("metadata", {})
        if isinstance(template.get("spec"), dict):
            default_pod_spec(template["spec"])
    elif kind == "Pod" and isinstance(spec, dict):
        default_pod_spec(spec)
        spec.setdefault("serviceAccountName", "default")
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("priority", 0)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
        spec.setdefault("tolerations", [
            {"key": f"node.kubernetes.io/{taint}", "operator": "Exists", "effect": "NoExecute",
             "tolerationSeconds": 300} for taint in ("not-ready", "unreachable")
        ])
        status = obj.setdefault("status", {})
        status.setdefault("phase", "Pending")
        status.setdefault("qosClass", qos_class(spec))
    elif kind == "Service" and isinstance(spec, dict):
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        digest = hashlib.sha256(f"{obj['metadata'].get('namespace')}/{obj['metadata']['name']}"
                                .encode()).digest()
        spec.setdefault("clusterIP", f"10.96.{digest[0]}.{digest[1] % 250 + 2}")
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
        obj.setdefault("status", {}).setdefault("loadBalancer", {})
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
    elif kind in platform_kinds.KINDS and not rtype.custom:
        platform_kinds.apply_defaults(rtype, obj)
    elif kind == hpa.KIND and rtype.group == hpa.GROUP:
        hpa.apply_defaults(obj)


def default_pod_spec(spec: JSON) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if not isinstance(container, dict):
            continue
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        container.setdefault("resources", {})
        image = str(container.get("image", ""))
        tag = image.rsplit("/", 1)[-1].partition(":")[2] if "@" not in image else "digest"
        container.setdefault("imagePullPolicy", "Always" if tag in ("", "latest") else
                             "IfNotPresent")
        for port in container.get("ports") or []:
            port.setdefault("protocol", "TCP")


def qos_class(spec: JSON) -> str:
    containers = spec.get("containers") or []
    resources = [c.get("resources") or {} for c in containers if isinstance(c, dict)]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    guaranteed = all(
        set(r.get("limits") or {}) >= {"cpu", "memory"}
        and all((r.get("requests") or {}).get(k, v) == v
                for k, v in (r.get("limits") or {}).items())
        for r in resources
    )
    return "Guaranteed" if guaranteed else "Burstable"


def validate(rtype: ResourceType, obj: JSON, old: JSON | None) -> None:
    meta = obj.get("metadata") or {}
    name = str(meta.get("name", ""))
    group = rtype.group
    if rtype.kind != "Event":
        pattern = _LABEL if rtype.kind in ("Namespace", "Service") else _SUBDOMAIN
        if not pattern.match(name) or len(name) > 253:
            raise invalid(rtype.kind, group, name, "metadata.name", name,
                          "a lowercase RFC 1123 subdomain must consist of lower case "
                          "alphanumeric characters, '-' or '.', and must start and end with an "
                          "alphanumeric character")
    spec = obj.get("spec")
    if rtype.kind in WORKLOADS and not rtype.custom:
        if not isinstance(spec, dict):
            raise invalid(rtype.kind, group, name, "spec", None, "spec is required")
        _validate_workload(rtype, name, spec, old)
    elif rtype.kind == "Pod" and not rtype.custom:
        if not isinstance(spec, dict):
            raise invalid(rtype.kind, group, name, "spec", None, "spec is required")
        _validate_pod_spec(rtype, name, spec, "spec")
    elif rtype.kind in platform_kinds.KINDS and not rtype.custom:
        platform_kinds.validate(rtype, obj, old)
    elif rtype.kind == hpa.KIND and rtype.group == hpa.GROUP:
        hpa.validate(obj)


def _validate_workload(rtype: ResourceType, name: str, spec: JSON, old: JSON | None) -> None:
    kind, group = rtype.kind, rtype.group
    replicas = spec.get("replicas")
    if not isinstance(replicas, int) or replicas < 0:
        raise invalid(kind, group, name, "spec.replicas", replicas,
                      "must be greater than or equal to 0")
    selector = spec.get("selector")
    if not isinstance(selector, dict) or not (
        selector.get("matchLabels") or selector.get("matchExpressions")
    ):
        raise invalid(kind, group, name, "spec.selector", None, "empty selector is invalid for "
                      "deployment" if kind == "Deployment" else "empty selector is invalid")
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    if not selectors.matches_labels(selectors.from_object(selector), labels):
        raise invalid(kind, group, name, "spec.template.metadata.labels", labels,
                      "`selector` does not match template `labels`")
    if old is not None and (old.get("spec") or {}).get("selector") != selector:
        raise invalid(kind, group, name, "spec.selector", None, "field is immutable")
    pod_spec = template.get("spec")
    if not isinstance(pod_spec, dict):
        raise invalid(kind, group, name, "spec.template.spec", None, "pod spec is required")
    _validate_pod_spec(rtype, name, pod_spec, "spec.template.spec")


def _validate_pod_spec(rtype: ResourceType, name: str, spec: JSON, path: str) -> None:
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        raise invalid(rtype.kind, rtype.group, name, f"{path}.containers", None,
                      "Required value")
    seen: set[str] = set()
    for index, container in enumerate(containers):
        where = f"{path}.containers[{index}]"
        if not isinstance(container, dict) or not container.get("name"):
            raise invalid(rtype.kind, rtype.group, name, f"{where}.name", None, "Required value")
        if container["name"] in seen:
            raise invalid(rtype.kind, rtype.group, name, f"{where}.name", container["name"],
                          "Duplicate value")
        seen.add(container["name"])
        if not container.get("image"):
            raise invalid(rtype.kind, rtype.group, name, f"{where}.image", None, "Required value")
