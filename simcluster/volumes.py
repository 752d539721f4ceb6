"""Volume claims: the PV controller and a CSI provisioner/resizer in one. A claim whose
StorageClass exists gets a dynamically provisioned PersistentVolume `pvc-<claim uid>` and is
Bound (WaitForFirstConsumer classes wait for a pod that mounts it); a claim without a class
binds to a matching Available volume. A bound claim asking for more storage than it has is
expanded when its class has `allowVolumeExpansion: true`."""

from __future__ import annotations

from typing import Any

from .controllers import BUILTINS, Ctx
from .platform_kinds import quantity_bytes

JSON = dict[str, Any]
DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
PROVISIONER = "volume.kubernetes.io/storage-provisioner"


def _requested(pvc: JSON) -> str | None:
    return ((pvc["spec"].get("resources") or {}).get("requests") or {}).get("storage")


def _default_class(ctx: Ctx) -> JSON | None:
    found = [sc for sc in ctx.list("storage.k8s.io", "StorageClass")
             if (sc["metadata"].get("annotations") or {}).get(DEFAULT_CLASS) == "true"]
    return found[-1] if found else None


def _mounted(ctx: Ctx, pvc: JSON) -> bool:
    name = pvc["metadata"]["name"]
    return any(
        (volume.get("persistentVolumeClaim") or {}).get("claimName") == name
        for pod in ctx.list("", "Pod", pvc["metadata"]["namespace"])
        for volume in pod["spec"].get("volumes") or []
    )


@BUILTINS.for_kind("", "PersistentVolumeClaim", name="persistentvolume-controller", order=30)
def reconcile_claim(ctx: Ctx, pvc: JSON) -> None:
    spec = pvc["spec"]
    if "storageClassName" not in spec:
        # The DefaultStorageClass admission plugin (here: the first pass) fills it in.
        default = _default_class(ctx)
        if default is not None:
            spec["storageClassName"] = default["metadata"]["name"]
            ctx.write(pvc)
            return
    if spec.get("volumeName") and pvc["status"].get("phase") == "Bound":
        _expand(ctx, pvc)
        return
    class_name = spec.get("storageClassName") or ""
    if not class_name:
        _bind_static(ctx, pvc)
        return
    sc = ctx.get("storage.k8s.io", "StorageClass", "", class_name)
    if sc is None:
        _once(ctx, pvc, "Warning", "ProvisioningFailed",
              f'storageclass.storage.k8s.io "{class_name}" not found')
        return
    if sc.get("volumeBindingMode") == "WaitForFirstConsumer" and not _mounted(ctx, pvc):
        _once(ctx, pvc, "Normal", "WaitForFirstConsumer",
              "waiting for first consumer to be created before binding")
        return
    _provision(ctx, pvc, sc)


def _once(ctx: Ctx, pvc: JSON, type_: str, reason: str, message: str) -> None:
    """An event the controller would repeat on every resync, recorded once so a waiting claim
    leaves the world quiet."""
    uid = pvc["metadata"]["uid"]
    seen = ctx.list("", "Event", pvc["metadata"]["namespace"], where=lambda e: (
        e.get("involvedObject", {}).get("uid") == uid and e.get("reason") == reason))
    if not seen:
        ctx.event(pvc, type_, reason, message, component="persistentvolume-controller")


def _provision(ctx: Ctx, pvc: JSON, sc: JSON) -> None:
    meta = pvc["metadata"]
    provisioner = str(sc.get("provisioner", ""))
    size = _requested(pvc) or "1Gi"
    name = f"pvc-{meta['uid']}"
    ctx.event(pvc, "Normal", "Provisioning",
              f'External provisioner is provisioning volume for claim '
              f'"{meta["namespace"]}/{meta["name"]}"', component=provisioner)
    ctx.create({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": provisioner},
                     "finalizers": ["kubernetes.io/pv-protection"]},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": list(pvc["spec"].get("accessModes") or ["ReadWriteOnce"]),
            "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy", "Delete"),
            "storageClassName": sc["metadata"]["name"],
            "volumeMode": pvc["spec"].get("volumeMode", "Filesystem"),
            "csi": {"driver": provisioner, "volumeHandle": name, "fsType": "ext4"},
            "claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1",
                         "namespace": meta["namespace"], "name": meta["name"],
                         "uid": meta["uid"]},
        },
    })
    _bound(ctx, pvc, name, size, provisioner)
    ctx.event(pvc, "Normal", "ProvisioningSucceeded", f"Successfully provisioned volume {name}",
              component=provisioner)


def _bind_static(ctx: Ctx, pvc: JSON) -> None:
    wanted = quantity_bytes(_requested(pvc) or "0")
    modes = set(pvc["spec"].get("accessModes") or [])

    def fits(pv: JSON) -> bool:
        spec = pv["spec"]
        return (pv.get("status", {}).get("phase") == "Available"
                and not spec.get("storageClassName") and not spec.get("claimRef")
                and modes <= set(spec.get("accessModes") or [])
                and quantity_bytes(spec.get("capacity", {}).get("storage", "0")) >= wanted)

    candidates = sorted(ctx.list("", "PersistentVolume", where=fits),
                        key=lambda pv: quantity_bytes(pv["spec"]["capacity"]["storage"]))
    if not candidates:
        _once(ctx, pvc, "Normal", "FailedBinding",
              "no persistent volumes available for this claim and no storage class is set")
        return
    pv = candidates[0]
    meta = pvc["metadata"]
    pv["spec"]["claimRef"] = {"kind": "PersistentVolumeClaim", "apiVersion": "v1",
                              "namespace": meta["namespace"], "name": meta["name"],
                              "uid": meta["uid"]}
    pv["status"] = {"phase": "Bound"}
    ctx.write(pv)
    _bound(ctx, pvc, pv["metadata"]["name"], pv["spec"]["capacity"]["storage"], None)


def _bound(ctx: Ctx, pvc: JSON, volume: str, size: str, provisioner: str | None) -> None:
    pvc["spec"]["volumeName"] = volume
    annotations = pvc["metadata"].setdefault("annotations", {})
    annotations["pv.kubernetes.io/bind-completed"] = "yes"
    annotations["pv.kubernetes.io/bound-by-controller"] = "yes"
    if provisioner:
        annotations["volume.beta.kubernetes.io/storage-provisioner"] = provisioner
        annotations[PROVISIONER] = provisioner
    finalizers = pvc["metadata"].setdefault("finalizers", [])
    if "kubernetes.io/pvc-protection" not in finalizers:
        finalizers.append("kubernetes.io/pvc-protection")
    pvc["status"] = {"phase": "Bound",
                     "accessModes": list(pvc["spec"].get("accessModes") or ["ReadWriteOnce"]),
                     "capacity": {"storage": size}}
    ctx.write(pvc)


def _expand(ctx: Ctx, pvc: JSON) -> None:
    wanted = _requested(pvc)
    have = (pvc["status"].get("capacity") or {}).get("storage")
    if not wanted or not have or quantity_bytes(wanted) <= quantity_bytes(have):
        return
    sc = ctx.get("storage.k8s.io", "StorageClass", "", pvc["spec"].get("storageClassName") or "")
    if sc is None or not sc.get("allowVolumeExpansion"):
        return  # the resize admission check is not modelled: the request just stays unmet
    pv = ctx.get("", "PersistentVolume", "", pvc["spec"]["volumeName"])
    if pv is not None:
        pv["spec"]["capacity"] = {"storage": wanted}
        ctx.write(pv)
    provisioner = (pvc["metadata"].get("annotations") or {}).get(PROVISIONER, "")
    ctx.event(pvc, "Normal", "Resizing", f"External resizer is resizing volume "
              f"{pvc['spec']['volumeName']}", component=f"external-resizer {provisioner}")
    ctx.event(pvc, "Normal", "FileSystemResizeSuccessful",
              f"MountVolume.NodeExpandVolume succeeded for volume "
              f'"{pvc["spec"]["volumeName"]}"', component="kubelet")
    pvc["status"]["capacity"] = {"storage": wanted}
    pvc["status"]["allocatedResources"] = {"storage": wanted}
    ctx.write(pvc)


@BUILTINS.for_kind("", "PersistentVolume", name="persistentvolume-reclaimer", order=31)
def reconcile_volume(ctx: Ctx, pv: JSON) -> None:
    """A volume whose claim is gone is deleted (reclaim policy Delete) or Released."""
    claim = pv["spec"].get("claimRef")
    if claim is None:
        if pv.get("status", {}).get("phase") == "Pending":
            pv["status"] = {"phase": "Available"}
            ctx.write(pv)
        return
    current = ctx.get("", "PersistentVolumeClaim", claim.get("namespace", ""),
                      claim.get("name", ""))
    if current is not None and current["metadata"]["uid"] == claim.get("uid"):
        if pv.get("status", {}).get("phase") != "Bound":
            pv["status"] = {"phase": "Bound"}
            ctx.write(pv)
        return
    if pv["spec"].get("persistentVolumeReclaimPolicy") == "Delete":
        ctx.delete(pv)
    elif pv.get("status", {}).get("phase") != "Released":
        pv["status"] = {"phase": "Released"}
        ctx.write(pv)
