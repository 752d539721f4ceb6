"""Defaulting and basic validation of the platform kinds (Jobs, CronJobs, volume claims and
volumes, storage classes, Ingresses), as the API server applies them on every write."""

from __future__ import annotations

from typing import Any

from .errors import ApiError, qualified
from .resources import ResourceType

JSON = dict[str, Any]
KINDS = frozenset({"Job", "CronJob", "PersistentVolumeClaim", "PersistentVolume",
                   "StorageClass", "Ingress"})
JOB_RESTART_POLICIES = ("OnFailure", "Never")


def apply_defaults(rtype: ResourceType, obj: JSON) -> None:
    from .defaults import default_pod_spec  # defaults imports this module

    kind, spec = rtype.kind, obj.get("spec")
    if kind == "Job" and isinstance(spec, dict):
        _default_job(obj, spec, default_pod_spec)
    elif kind == "CronJob" and isinstance(spec, dict):
        spec.setdefault("concurrencyPolicy", "Allow")
        spec.setdefault("suspend", False)
        spec.setdefault("successfulJobsHistoryLimit", 3)
        spec.setdefault("failedJobsHistoryLimit", 1)
        job_spec = (spec.get("jobTemplate") or {}).get("spec")
        if isinstance(job_spec, dict):
            job_spec.setdefault("backoffLimit", 6)
            job_spec.setdefault("completionMode", "NonIndexed")
            job_spec.setdefault("suspend", False)
            pod_spec = (job_spec.get("template") or {}).get("spec")
            if isinstance(pod_spec, dict):
                default_pod_spec(pod_spec)
    elif kind == "PersistentVolumeClaim" and isinstance(spec, dict):
        spec.setdefault("volumeMode", "Filesystem")
        obj.setdefault("status", {}).setdefault("phase", "Pending")
    elif kind == "PersistentVolume" and isinstance(spec, dict):
        spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
        spec.setdefault("volumeMode", "Filesystem")
        obj.setdefault("status", {}).setdefault("phase", "Pending")
    elif kind == "StorageClass":
        obj.setdefault("reclaimPolicy", "Delete")
        obj.setdefault("volumeBindingMode", "Immediate")
    elif kind == "Ingress" and isinstance(spec, dict):
        obj.setdefault("status", {}).setdefault("loadBalancer", {})


def _default_job(obj: JSON, spec: JSON, default_pod_spec: Any) -> None:
    meta = obj["metadata"]
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    template = spec.setdefault("template", {})
    if not spec.get("manualSelector") and meta.get("uid"):
        # The generated selector and labels the API server adds (batch/v1 Job strategy).
        uid, name = meta["uid"], meta["name"]
        spec.setdefault("selector", {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}})
        labels = template.setdefault("metadata", {}).setdefault("labels", {})
        labels.setdefault("batch.kubernetes.io/controller-uid", uid)
        labels.setdefault("batch.kubernetes.io/job-name", name)
        labels.setdefault("controller-uid", uid)
        labels.setdefault("job-name", name)
        if not meta.get("labels"):
            meta["labels"] = dict(labels)  # a Job without labels takes its template's
    if isinstance(template.get("spec"), dict):
        default_pod_spec(template["spec"])


def validate(rtype: ResourceType, obj: JSON, old: JSON | None) -> None:
    from .defaults import _validate_pod_spec as validate_pod_spec

    kind, name = rtype.kind, str(obj["metadata"].get("name", ""))
    spec = obj.get("spec")
    if kind == "Job":
        if not isinstance(spec, dict) or not isinstance(
                (spec.get("template") or {}).get("spec"), dict):
            raise _field_error(rtype, name, "spec.template.spec", "FieldValueRequired",
                               "Required value")
        validate_pod_spec(rtype, name, spec["template"]["spec"], "spec.template.spec")
        policy = spec["template"]["spec"].get("restartPolicy")
        if policy not in JOB_RESTART_POLICIES:
            raise _field_error(rtype, name, "spec.template.spec.restartPolicy",
                               "FieldValueNotSupported",
                               f'Unsupported value: "{policy}": supported values: '
                               + ", ".join(f'"{p}"' for p in JOB_RESTART_POLICIES))
        for key in ("backoffLimit", "parallelism", "completions", "activeDeadlineSeconds"):
            value = spec.get(key)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise _field_error(rtype, name, f"spec.{key}", "FieldValueInvalid",
                                   f"Invalid value: {value}: must be greater than or equal "
                                   "to 0")
        if old is not None and (old.get("spec") or {}).get("selector") != spec.get("selector"):
            raise _field_error(rtype, name, "spec.selector", "FieldValueInvalid",
                               "Invalid value: ...: field is immutable")
    elif kind == "PersistentVolumeClaim" and old is not None and isinstance(spec, dict):
        capacity = ((old.get("status") or {}).get("capacity") or {}).get("storage")
        wanted = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
        if capacity and wanted and quantity_bytes(wanted) < quantity_bytes(capacity):
            raise _field_error(rtype, name, "spec.resources.requests.storage",
                               "FieldValueForbidden",
                               "Forbidden: field can not be less than status.capacity")


def _field_error(rtype: ResourceType, name: str, field: str, reason: str,
                 text: str) -> ApiError:
    details: JSON = {"name": name, "kind": rtype.kind,
                     "causes": [{"reason": reason, "message": text, "field": field}]}
    if rtype.group:
        details["group"] = rtype.group
    return ApiError(422, f'{qualified(rtype.kind, rtype.group)} "{name}" is invalid: '
                         f"{field}: {text}", details=details)


_SUFFIXES = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
}


def quantity_bytes(text: str | int | float) -> int:
    """A resource.Quantity (`10Gi`, `500M`, `1e9`, `1024`) in bytes."""
    raw = str(text).strip()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if raw.endswith(suffix):
            return int(float(raw[: -len(suffix)]) * _SUFFIXES[suffix])
    try:
        return int(float(raw))
    except ValueError:
        raise ApiError(422, f"quantities must match the regular expression "
                            f"'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {raw!r}") from None
