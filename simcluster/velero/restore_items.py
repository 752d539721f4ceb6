"""How Velero turns a backed-up object into the one a restore creates (server-set metadata
and status dropped, namespace mapped, restore labels added, what its restore item actions
reset), in what order, and when an object already there counts as the same."""

from __future__ import annotations

from .. import defaults
from ..resources import ResourceType
from ..store import clone
from .common import BACKUP_NAME_LABEL, JSON, RESTORE_NAME_LABEL, group_kind

# Velero's default restore order; everything else follows, by resource name.
RESTORE_PRIORITY = [("", "Namespace"), ("", "PersistentVolumeClaim"), ("", "ServiceAccount"),
                    ("", "Secret"), ("", "ConfigMap"), ("", "LimitRange"), ("", "Service")]
RESET_METADATA = ("generateName", "selfLink", "uid", "resourceVersion", "generation",
                  "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                  "ownerReferences", "managedFields")
PVC_BINDING = ("pv.kubernetes.io/bind-completed", "pv.kubernetes.io/bound-by-controller",
               "volume.kubernetes.io/selected-node", "volume.kubernetes.io/storage-provisioner",
               "volume.beta.kubernetes.io/storage-provisioner")


def restore_order(obj: JSON) -> tuple[int, str, str, str]:
    key = group_kind(obj)
    rank = RESTORE_PRIORITY.index(key) if key in RESTORE_PRIORITY else len(RESTORE_PRIORITY)
    meta = obj["metadata"]
    return rank, f"{key[1]}.{key[0]}", meta.get("namespace", ""), meta["name"]


def restorable(obj: JSON, namespace: str | None, restore_spec: JSON, backup: str,
               restore: str) -> JSON:
    """The object as Velero creates it: server-set metadata and status dropped, namespace
    mapped, restore labels added, and what its restore item actions reset."""
    out = clone(obj)
    out.pop("status", None)
    meta = out["metadata"]
    for key in RESET_METADATA:
        meta.pop(key, None)
    if namespace is not None:
        meta["namespace"] = namespace
    group, kind = group_kind(out)
    spec = out.get("spec") if isinstance(out.get("spec"), dict) else {}
    if (group, kind) == ("", "Namespace"):
        out.pop("spec", None)
        return out
    meta["labels"] = {**(meta.get("labels") or {}), BACKUP_NAME_LABEL: backup,
                      RESTORE_NAME_LABEL: restore}
    if (group, kind) == ("", "Service") and spec:
        if spec.get("clusterIP") != "None":
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
        if not restore_spec.get("preserveNodePorts"):
            for port in spec.get("ports") or []:
                port.pop("nodePort", None)
    elif (group, kind) == ("", "PersistentVolumeClaim") and spec:
        spec.pop("volumeName", None)  # no volumes are restored: the claim is provisioned anew
        for key in PVC_BINDING:
            (meta.get("annotations") or {}).pop(key, None)
    elif (group, kind) == ("batch", "Job") and spec:
        for labels in ((spec.get("selector") or {}).get("matchLabels"),
                       ((spec.get("template") or {}).get("metadata") or {}).get("labels")):
            for key in ("controller-uid", "batch.kubernetes.io/controller-uid"):
                (labels or {}).pop(key, None)
        if spec.get("selector") and not spec["selector"].get("matchLabels") \
                and not spec["selector"].get("matchExpressions"):
            spec.pop("selector")
    return out


def comparable(rtype: ResourceType, obj: JSON) -> JSON:
    """What decides whether an existing object "is the same as the backed-up version":
    everything but server-set metadata, status and the restore labels, API defaults applied."""
    out = clone(obj)
    out.pop("status", None)
    meta = out.get("metadata") or {}
    out["metadata"] = {k: meta[k] for k in ("name", "namespace", "labels", "annotations")
                       if meta.get(k)}
    labels = out["metadata"].get("labels") or {}
    for key in (BACKUP_NAME_LABEL, RESTORE_NAME_LABEL):
        labels.pop(key, None)
    if not labels:
        out["metadata"].pop("labels", None)
    defaults.apply_defaults(rtype, out)
    out.pop("status", None)
    return out
