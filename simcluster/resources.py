"""The kinds the simulated API serves: names, scope, subresources and supported field labels.
Custom resources not registered here are still served, free-form, and registered on first use."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
COMMON_FIELDS = frozenset({"metadata.name", "metadata.namespace"})


@dataclass(frozen=True)
class ScalePaths:
    """Where a custom resource's `/scale` reads and writes, as its CRD's `subresources.scale`
    declares it (`.spec.replicas`-style paths). Built-in kinds need none: their registries
    map spec.replicas, status.replicas and spec.selector."""

    spec_replicas: str = ".spec.replicas"
    status_replicas: str = ".status.replicas"
    label_selector: str | None = None  # a path to the selector *string*; None serves ""


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    status_subresource: bool = True
    scale_subresource: bool = False
    fields: frozenset[str] = COMMON_FIELDS
    custom: bool = False
    # Another version of the same kind that objects are stored as; this one is served by
    # conversion (autoscaling/v1 HorizontalPodAutoscalers are stored as v2).
    storage_version: str | None = None
    scale_paths: ScalePaths | None = None  # custom kinds with a scale subresource

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def bumps_generation(self) -> bool:
        """Spec changes bump metadata.generation for these (as the real registries do)."""
        return self.kind in {"Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job",
                             "CronJob", "Ingress"} or self.custom

    def store_group(self) -> str:
        return self.group or "core"


def _fields(*names: str) -> frozenset[str]:
    return COMMON_FIELDS | frozenset(names)


POD_FIELDS = _fields(
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
)
EVENT_FIELDS = _fields(
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
)

BUILTIN_TYPES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "namespaces", "Namespace", False, ("ns",),
                 fields=_fields("status.phase")),
    ResourceType("", "v1", "pods", "Pod", True, ("po",), fields=POD_FIELDS),
    ResourceType("", "v1", "events", "Event", True, ("ev",), False, fields=EVENT_FIELDS),
    ResourceType("", "v1", "services", "Service", True, ("svc",)),
    ResourceType("", "v1", "configmaps", "ConfigMap", True, ("cm",), False),
    ResourceType("", "v1", "secrets", "Secret", True, (), False, fields=_fields("type")),
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",), False),
    ResourceType("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ("pvc",)),
    ResourceType(
        "apps", "v1", "deployments", "Deployment", True, ("deploy",), scale_subresource=True
    ),
    ResourceType(
        "apps", "v1", "replicasets", "ReplicaSet", True, ("rs",), scale_subresource=True,
        fields=_fields("status.replicas"),
    ),
    ResourceType(
        "apps", "v1", "statefulsets", "StatefulSet", True, ("sts",), scale_subresource=True
    ),
    ResourceType("apps", "v1", "controllerrevisions", "ControllerRevision", True, (), False),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", True, (), False),
    # Stored as v2 (the preferred version, listed first), served as v1 by conversion.
    ResourceType("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler",
                 True, ("hpa",)),
    ResourceType("autoscaling", "v1", "horizontalpodautoscalers", "HorizontalPodAutoscaler",
                 True, ("hpa",), storage_version="v2"),
    # Platform kinds: controllers in jobs.py, endpoints.py and volumes.py; defaults and
    # validation in platform_kinds.py. CronJobs, StorageClasses and Ingresses are stored only.
    ResourceType("", "v1", "endpoints", "Endpoints", True, ("ep",), False),
    ResourceType("", "v1", "persistentvolumes", "PersistentVolume", False, ("pv",)),
    ResourceType("batch", "v1", "jobs", "Job", True, (), fields=_fields("status.successful")),
    ResourceType("batch", "v1", "cronjobs", "CronJob", True, ("cj",)),
    ResourceType("storage.k8s.io", "v1", "storageclasses", "StorageClass", False, ("sc",),
                 False),
    ResourceType("networking.k8s.io", "v1", "ingresses", "Ingress", True, ("ing",)),
    ResourceType("networking.k8s.io", "v1", "ingressclasses", "IngressClass", False, (), False),
    # What opsbot's own chart installs besides the above (helm install/upgrade of the chart
    # against the simulation); the RBAC kinds are read by rbac.py, the others stored only.
    ResourceType("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True,
                 ("netpol",), False),
    ResourceType("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ("pdb",)),
    ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role", True, (), False),
    ResourceType("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True, (),
                 False),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False, (),
                 False),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding",
                 False, (), False),
    ResourceType("monitoring.coreos.com", "v1", "servicemonitors", "ServiceMonitor",
                 status_subresource=False, custom=True),
    ResourceType("monitoring.coreos.com", "v1", "prometheusrules", "PrometheusRule",
                 status_subresource=False, custom=True),
    ResourceType("external-secrets.io", "v1beta1", "externalsecrets", "ExternalSecret",
                 custom=True),
    # Well-known CRDs the bot talks to; served like any custom resource.
    ResourceType("velero.io", "v1", "backups", "Backup", status_subresource=False, custom=True),
    ResourceType("velero.io", "v1", "restores", "Restore", status_subresource=False, custom=True),
    ResourceType("velero.io", "v1", "schedules", "Schedule", status_subresource=False, custom=True),
    ResourceType("velero.io", "v1", "backupstoragelocations", "BackupStorageLocation",
                 short_names=("bsl",), status_subresource=False, custom=True),
    ResourceType("velero.io", "v1", "downloadrequests", "DownloadRequest",
                 status_subresource=False, custom=True),
    ResourceType("velero.io", "v1", "volumesnapshotlocations", "VolumeSnapshotLocation",
                 short_names=("vsl",), status_subresource=False, custom=True),
    ResourceType("cert-manager.io", "v1", "certificates", "Certificate",
                 short_names=("cert", "certs"), custom=True),
    ResourceType("cert-manager.io", "v1", "certificaterequests", "CertificateRequest",
                 short_names=("cr", "crs"), custom=True),
    ResourceType("cert-manager.io", "v1", "issuers", "Issuer", custom=True),
    ResourceType("cert-manager.io", "v1", "clusterissuers", "ClusterIssuer", False,
                 custom=True),
    ResourceType("acme.cert-manager.io", "v1", "orders", "Order", custom=True),
    ResourceType("acme.cert-manager.io", "v1", "challenges", "Challenge", custom=True),
    # The argo-rollouts CRD's scale subresource: the HPA count and selector string the
    # Rollouts controller keeps in status.
    ResourceType("argoproj.io", "v1alpha1", "rollouts", "Rollout", short_names=("ro",),
                 scale_subresource=True, custom=True,
                 scale_paths=ScalePaths(".spec.replicas", ".status.HPAReplicas",
                                        ".status.selector")),
    ResourceType("argoproj.io", "v1alpha1", "analysisruns", "AnalysisRun", custom=True),
    # Argo CD's Applications, stored only (opsbot drives Argo CD through its API, bot/argocd.py).
    ResourceType("argoproj.io", "v1alpha1", "applications", "Application", short_names=("app",),
                 status_subresource=False, custom=True),
    ResourceType("argoproj.io", "v1alpha1", "analysistemplates", "AnalysisTemplate", custom=True),
    ResourceType("argoproj.io", "v1alpha1", "experiments", "Experiment", custom=True),
    # Trivy Operator's scan results, stored only (the deploy gate reads them; nothing scans).
    ResourceType("aquasecurity.github.io", "v1alpha1", "vulnerabilityreports",
                 "VulnerabilityReport", short_names=("vuln", "vulns"), status_subresource=False,
                 custom=True),
)


def guess_kind(plural: str) -> str:
    """Kind for a custom plural nobody registered (used only until an object names its kind)."""
    if plural.endswith("ies"):
        singular = plural[:-3] + "y"
    elif plural.endswith(("ses", "xes")):
        singular = plural[:-2]
    elif plural.endswith("s"):
        singular = plural[:-1]
    else:
        singular = plural
    return singular[:1].upper() + singular[1:]


@dataclass
class ResourceRegistry:
    """All served kinds, looked up by (group, version, plural) or by (group, kind)."""

    _by_plural: dict[tuple[str, str, str], ResourceType] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def builtin(cls) -> ResourceRegistry:
        registry = cls()
        for rtype in BUILTIN_TYPES:
            registry.register(rtype)
        return registry

    def register(self, rtype: ResourceType) -> ResourceType:
        with self._lock:
            self._by_plural[(rtype.group, rtype.version, rtype.plural)] = rtype
        return rtype

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        with self._lock:
            return self._by_plural.get((group, version, plural))

    def by_kind(self, group: str, kind: str) -> ResourceType | None:
        """The type objects of (group, kind) are stored as."""
        with self._lock:
            for rtype in self._by_plural.values():
                if rtype.group == group and rtype.kind == kind and not rtype.storage_version:
                    return rtype
        return None

    def storage_of(self, rtype: ResourceType) -> ResourceType:
        """The type `rtype`'s objects are stored as: itself, unless it is served by conversion."""
        if not rtype.storage_version:
            return rtype
        stored = self.lookup(rtype.group, rtype.storage_version, rtype.plural)
        if stored is None:
            raise KeyError(f"no storage version {rtype.storage_version} of {rtype.plural}")
        return stored

    def ensure_custom(
        self, group: str, version: str, plural: str, namespaced: bool, kind: str | None = None
    ) -> ResourceType:
        """The type for a custom path; unknown plurals are registered on the fly."""
        known = self.lookup(group, version, plural)
        if known is not None:
            if kind and known.kind != kind and known.kind == guess_kind(plural):
                return self.register(_with_kind(known, kind))
            return known
        return self.register(
            ResourceType(group, version, plural, kind or guess_kind(plural), namespaced,
                         status_subresource=False, custom=True)
        )

    def all(self) -> list[ResourceType]:
        with self._lock:
            return list(self._by_plural.values())

    def groups(self) -> dict[str, list[str]]:
        """Group name -> versions, core group excluded."""
        out: dict[str, list[str]] = {}
        for rtype in self.all():
            if rtype.group and rtype.version not in out.setdefault(rtype.group, []):
                out[rtype.group].append(rtype.version)
        return out

    def in_group_version(self, group: str, version: str) -> Iterable[ResourceType]:
        return [t for t in self.all() if t.group == group and t.version == version]


def _with_kind(rtype: ResourceType, kind: str) -> ResourceType:
    return dataclasses.replace(rtype, kind=kind)
