"""A Velero server for the simulated cluster, so backup runbooks can be exercised end to end:
Backups record copies of namespaced objects in simulated object storage (held here, never in
the cluster), Restores create them again, Schedules are validated and fired on request. Phases,
progress, counts and validation messages follow Velero's controllers; tests script the backups
and restores that should fail or hang. One `Velero` per SimCluster (`install` registers it)."""

from __future__ import annotations

import fnmatch
import gzip
import json
import math
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from . import defaults, selectors
from .clock import fmt_time
from .controllers import ControllerRegistry, Ctx
from .discovery import VERSION
from .errors import ApiError
from .resources import ResourceType
from .routing import Route
from .store import clone

JSON = dict[str, Any]
GROUP, API_VERSION = "velero.io", "velero.io/v1"
NAMESPACE = "velero"  # the one namespace the simulated Velero server watches
STORAGE_LOCATION_LABEL = "velero.io/storage-location"
SCHEDULE_LABEL = "velero.io/schedule-name"
BACKUP_NAME_LABEL = "velero.io/backup-name"
RESTORE_NAME_LABEL = "velero.io/restore-name"
DEFAULT_TTL = "720h0m0s"
DEFAULT_FAILURE = "scripted failure (simulated)"
PROGRESS_STEPS = 3  # a backup or restore moves its items in this many controller passes
Outcome = Literal["PartiallyFailed", "Failed", "hang"]
OUTCOMES: tuple[Outcome, ...] = ("PartiallyFailed", "Failed", "hang")
RUNNING = ("InProgress", "Finalizing", "FinalizingPartiallyFailed")
# Not recorded: derived from or restored through their owners (pods, replica sets, controller
# revisions, endpoints), or never restored by Velero (events, its own backups and restores).
NOT_RECORDED = {("", "Pod"), ("apps", "ReplicaSet"), ("apps", "ControllerRevision"),
                ("", "Endpoints"), ("", "Event"), (GROUP, "Backup"), (GROUP, "Restore")}
# Velero appends these to every restore's spec.excludedResources.
NON_RESTORABLE = ["nodes", "events", "events.events.k8s.io", "backups.velero.io",
                  "restores.velero.io", "resticrepositories.velero.io",
                  "csinodes.storage.k8s.io", "volumeattachments.storage.k8s.io",
                  "backuprepositories.velero.io"]
# Velero's default restore order; everything else follows, by resource name.
RESTORE_PRIORITY = [("", "Namespace"), ("", "PersistentVolumeClaim"), ("", "ServiceAccount"),
                    ("", "Secret"), ("", "ConfigMap"), ("", "LimitRange"), ("", "Service")]
RESET_METADATA = ("generateName", "selfLink", "uid", "resourceVersion", "generation",
                  "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                  "ownerReferences", "managedFields")
PVC_BINDING = ("pv.kubernetes.io/bind-completed", "pv.kubernetes.io/bound-by-controller",
               "volume.kubernetes.io/selected-node", "volume.kubernetes.io/storage-provisioner",
               "volume.beta.kubernetes.io/storage-provisioner")
EXISTS_WARNING = ('could not restore, {kind} "{name}" already exists. Warning: the in-cluster '
                  "version is different than the backed-up version")


# -- scripts ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutcomeScript:
    """Backups (or restores) whose name starts with `name_prefix` end this way."""

    name_prefix: str
    outcome: Outcome
    errors: int = 1
    warnings: int = 0
    failure_reason: str = DEFAULT_FAILURE

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")
        for name in ("errors", "warnings"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a whole number, 0 or more")
        if self.outcome == "PartiallyFailed" and self.errors < 1:
            raise ValueError("a PartiallyFailed outcome needs at least one error")


def parse_outcome(value: object) -> Outcome:
    for outcome in OUTCOMES:
        if value == outcome:
            return outcome
    raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")


# -- Go durations and robfig/cron schedules, as Velero parses them -------------------------------

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
          "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a Go duration (`720h0m0s`, `24h`, `1.5h`); ValueError with Go's message."""
    rest = text
    sign = -1.0 if rest.startswith("-") else 1.0
    rest = rest[1:] if rest[:1] in ("+", "-") else rest
    if rest == "0":
        return 0.0
    if not rest:
        raise ValueError(f'time: invalid duration "{text}"')
    total = 0.0
    while rest:
        number = re.match(r"(\d*)(\.\d*)?", rest)
        digits = number.group(0) if number else ""
        if digits in ("", "."):
            raise ValueError(f'time: invalid duration "{text}"')
        rest = rest[len(digits):]
        unit = re.match(r"[^\d.]+", rest)
        if unit is None:
            raise ValueError(f'time: missing unit in duration "{text}"')
        if unit.group(0) not in _UNITS:
            raise ValueError(f'time: unknown unit "{unit.group(0)}" in duration "{text}"')
        total += float(digits) * _UNITS[unit.group(0)]
        rest = rest[unit.end():]
    return sign * total


_MONTHS = {m: i + 1 for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul",
                                            "aug", "sep", "oct", "nov", "dec"])}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_CRON_FIELDS: tuple[tuple[int, int, dict[str, int]], ...] = (
    (0, 59, {}), (0, 23, {}), (1, 31, {}), (1, 12, _MONTHS), (0, 6, _DAYS))
_DESCRIPTORS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


def schedule_errors(spec: object) -> list[str]:
    """Velero's validation of `spec.schedule` (robfig/cron's standard parser)."""
    if not spec or not isinstance(spec, str):
        return ["Schedule must be a non-empty valid Cron expression"]
    try:
        _parse_cron(spec)
    except ValueError as exc:
        return [f"invalid schedule: {exc}"]
    return []


def _parse_cron(spec: str) -> None:
    if spec.startswith("@"):
        if spec.startswith("@every "):
            try:
                parse_duration(spec[len("@every "):])
            except ValueError as exc:
                raise ValueError(f"Failed to parse duration {spec}: {exc}") from exc
        elif spec not in _DESCRIPTORS:
            raise ValueError(f"Unrecognized descriptor: {spec}")
        return
    fields = spec.split()
    if len(fields) != len(_CRON_FIELDS):
        raise ValueError(f"Expected exactly 5 fields, found {len(fields)}: {spec}")
    for text, (low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        for part in text.split(","):
            _cron_range(part, low, high, names)


def _cron_range(expr: str, low: int, high: int, names: dict[str, int]) -> None:
    range_and_step = expr.split("/")
    low_and_high = range_and_step[0].split("-")
    if low_and_high[0] in ("*", "?"):
        start, end = low, high
    else:
        start = _cron_int(low_and_high[0], names)
        if len(low_and_high) == 1:
            end = start
        elif len(low_and_high) == 2:
            end = _cron_int(low_and_high[1], names)
        else:
            raise ValueError(f"Too many hyphens: {expr}")
    if len(range_and_step) == 2:
        step = _cron_int(range_and_step[1], {})
        if len(low_and_high) == 1 and low_and_high[0] not in ("*", "?"):
            end = high  # "5/10" means 5-max/10
    elif len(range_and_step) > 2:
        raise ValueError(f"Too many slashes: {expr}")
    else:
        step = 1
    if start < low:
        raise ValueError(f"Beginning of range ({start}) below minimum ({low}): {expr}")
    if end > high:
        raise ValueError(f"End of range ({end}) above maximum ({high}): {expr}")
    if start > end:
        raise ValueError(f"Beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise ValueError(f"Step of range should be a positive number: {expr}")


def _cron_int(text: str, names: dict[str, int]) -> int:
    if text.lower() in names:
        return names[text.lower()]
    if not re.fullmatch(r"[+-]?\d+", text):
        raise ValueError(f'Failed to parse int from {text}: strconv.Atoi: parsing "{text}": '
                         "invalid syntax")
    if int(text) < 0:
        raise ValueError(f"Negative number ({int(text)}) not allowed: {text}")
    return int(text)


# -- what a backup or restore covers ----------------------------------------------------------


def includes_excludes_errors(includes: list[str], excludes: list[str]) -> list[str]:
    """Velero's collections.ValidateIncludesExcludes."""
    errors = []
    if len(set(includes)) > 1 and "*" in includes:
        errors.append("includes list must either contain '*' only, or a non-empty list of items")
    if "*" in excludes:
        errors.append("excludes list cannot contain '*'")
    errors.extend(f"excludes list cannot contain an item in the includes list: {item}"
                  for item in sorted(set(excludes)) if item in includes)
    return errors


def _spec_errors(spec: JSON, what: str) -> list[str]:
    errors = [f"Invalid included/excluded resource lists: {e}" for e in includes_excludes_errors(
        _strings(spec.get("includedResources")), _strings(spec.get("excludedResources")))]
    errors += [f"Invalid included/excluded namespace lists: {e}" for e in includes_excludes_errors(
        _strings(spec.get("includedNamespaces")), _strings(spec.get("excludedNamespaces")))]
    if spec.get("labelSelector") is not None and spec.get("orLabelSelectors") is not None:
        errors.append(f"encountered labelSelector as well as orLabelSelectors in {what} spec, "
                      "only one can be specified")
    for selector in [spec.get("labelSelector"), *(spec.get("orLabelSelectors") or [])]:
        try:
            selectors.from_object(selector if isinstance(selector, dict) else None)
        except ApiError as exc:
            errors.append(f"invalid label selector: {exc.message}")
    return errors


def _strings(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _matches(name: str, includes: list[str], excludes: list[str]) -> bool:
    if any(fnmatch.fnmatchcase(name, pattern) for pattern in excludes):
        return False
    return not includes or any(fnmatch.fnmatchcase(name, pattern) for pattern in includes)


def _resource_names(rtype: ResourceType) -> list[str]:
    """What includedResources may call a kind: plural, singular or short name, bare or
    qualified by its group (`deployments`, `deployments.apps`, `deploy`)."""
    bare = [rtype.plural, rtype.singular, *rtype.short_names]
    return bare + [f"{name}.{rtype.group}" for name in bare if rtype.group]


def _resource_included(rtype: ResourceType, spec: JSON) -> bool:
    names = _resource_names(rtype)
    includes = _strings(spec.get("includedResources"))
    excludes = _strings(spec.get("excludedResources"))
    if any(fnmatch.fnmatchcase(n, p) for n in names for p in excludes):
        return False
    return not includes or any(fnmatch.fnmatchcase(n, p) for n in names for p in includes)


def _labels_match(spec: JSON, obj: JSON) -> bool:
    labels = obj["metadata"].get("labels")
    ors = spec.get("orLabelSelectors")
    if ors:
        return any(selectors.matches_labels(selectors.from_object(s), labels) for s in ors)
    return selectors.matches_labels(selectors.from_object(spec.get("labelSelector")), labels)


def _spec_of(obj: JSON) -> JSON:
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


def _group_kind(obj: JSON) -> tuple[str, str]:
    return str(obj.get("apiVersion", "")).rpartition("/")[0], str(obj.get("kind", ""))


def _restore_order(obj: JSON) -> tuple[int, str, str, str]:
    key = _group_kind(obj)
    rank = RESTORE_PRIORITY.index(key) if key in RESTORE_PRIORITY else len(RESTORE_PRIORITY)
    meta = obj["metadata"]
    return rank, f"{key[1]}.{key[0]}", meta.get("namespace", ""), meta["name"]


def _restorable(obj: JSON, namespace: str | None, restore_spec: JSON, backup: str,
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
    group, kind = _group_kind(out)
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


def _comparable(rtype: ResourceType, obj: JSON) -> JSON:
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


def _omit_zero(status: JSON, **counts: int) -> None:
    """Velero's counters are omitempty: zero is absent."""
    for key, value in counts.items():
        if value:
            status[key] = value
        else:
            status.pop(key, None)


# -- the server ---------------------------------------------------------------------------------


def _results() -> JSON:
    return {"velero": [], "cluster": [], "namespaces": {}}


def _add(results: JSON, namespace: str, message: str) -> None:
    if namespace:
        results["namespaces"].setdefault(namespace, []).append(message)
    else:
        results["cluster"].append(message)


def _count(results: JSON) -> int:
    return (len(results["velero"]) + len(results["cluster"])
            + sum(len(v) for v in results["namespaces"].values()))


@dataclass
class _BackupRun:
    items: list[JSON]
    script: OutcomeScript | None
    failure: str | None = None  # the storage location was unavailable
    done: int = 0


@dataclass
class _RestoreRun:
    plan: list[JSON]
    policy: str
    script: OutcomeScript | None
    failure: str | None = None  # the backup's contents are not in object storage
    done: int = 0
    warnings: JSON = field(default_factory=_results)
    errors: JSON = field(default_factory=_results)


@dataclass(frozen=True)
class _Stored:
    uid: str
    items: list[JSON]


def _step(total: int) -> int:
    return max(1, math.ceil(total / PROGRESS_STEPS))


class Velero:
    """The simulated Velero server of one SimCluster. Its state (scripts, runs in progress and
    the object storage of completed backups) lives here, guarded by its own lock."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._backup_scripts: list[OutcomeScript] = []
        self._restore_scripts: list[OutcomeScript] = []
        self._backups: dict[str, _BackupRun] = {}  # by Backup uid
        self._restores: dict[str, _RestoreRun] = {}  # by Restore uid
        self._storage: dict[str, _Stored] = {}  # by backup name
        self._restore_results: dict[str, tuple[str, JSON]] = {}  # by restore name: (uid, ...)
        self._downloads: dict[str, bytes] = {}  # by URL token: gzipped resource lists
        self.base_url: Callable[[], str] = lambda: "http://127.0.0.1"  # set by SimCluster

    def install(self, registry: ControllerRegistry) -> None:
        registry.for_kind(GROUP, "BackupStorageLocation", name="velero-storage-location",
                          order=60)(self.reconcile_location)
        registry.for_kind(GROUP, "Schedule", name="velero-schedule", order=61)(
            self.reconcile_schedule)
        registry.for_kind(GROUP, "Backup", name="velero-backup", order=62)(self.reconcile_backup)
        registry.for_kind(GROUP, "Restore", name="velero-restore", order=63)(
            self.reconcile_restore)
        registry.for_kind(GROUP, "DownloadRequest", name="velero-download", order=64)(
            self.reconcile_download)
        registry.every_pass(name="velero-forget", order=95)(self.forget_deleted)

    # -- scripts and inspection ------------------------------------------------------------

    def script_backup(self, script: OutcomeScript) -> None:
        with self._lock:
            self._backup_scripts.append(script)

    def script_restore(self, script: OutcomeScript) -> None:
        with self._lock:
            self._restore_scripts.append(script)

    def clear_scripts(self) -> None:
        with self._lock:
            self._backup_scripts.clear()
            self._restore_scripts.clear()

    def contents(self, backup_name: str) -> list[JSON] | None:
        with self._lock:
            stored = self._storage.get(backup_name)
            return clone(stored.items) if stored is not None else None

    def results(self, restore_name: str) -> JSON | None:
        with self._lock:
            found = self._restore_results.get(restore_name)
            return clone(found[1]) if found is not None else None

    def _script(self, scripts: list[OutcomeScript], name: str) -> OutcomeScript | None:
        with self._lock:
            return next((s for s in reversed(scripts) if name.startswith(s.name_prefix)), None)

    # -- DownloadRequest -----------------------------------------------------------------------

    def reconcile_download(self, ctx: Ctx, request: JSON) -> None:
        """A BackupResourceList of a stored backup, handed out as Velero does: a signed URL
        (here a random token on the sim's own server, no bearer needed) to gzipped JSON
        `{"apps/v1/Deployment": ["ns/name", ...], ...}`. Other targets are not modelled."""
        if request["metadata"].get("namespace") != NAMESPACE:
            return
        status = request.get("status") or {}
        if status.get("phase"):
            return
        target = (request.get("spec") or {}).get("target") or {}
        if target.get("kind") != "BackupResourceList":
            return
        items = self.contents(str(target.get("name", "")))
        if items is None:
            return  # Velero leaves it New until the backup is in object storage
        listed: dict[str, list[str]] = {}
        for item in items:
            meta = item.get("metadata") or {}
            key = f"{item.get('apiVersion', 'v1')}/{item.get('kind', '')}"
            name = meta.get("name", "")
            listed.setdefault(key, []).append(
                f"{meta['namespace']}/{name}" if meta.get("namespace") else name)
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._downloads[token] = gzip.compress(json.dumps(listed, sort_keys=True).encode())
        request["status"] = {"phase": "Processed",
                             "downloadURL": f"{self.base_url()}/_velero/downloads/{token}",
                             "expiration": ctx.clock.stamp(600)}
        ctx.write(request)

    def download(self, token: str) -> bytes | None:
        with self._lock:
            return self._downloads.get(token)

    # -- BackupStorageLocation ---------------------------------------------------------------

    def reconcile_location(self, ctx: Ctx, location: JSON) -> None:
        """Validated once: there is no object storage to lose, so a location without a phase
        becomes Available; a status written by a test (Unavailable, ...) is left alone."""
        if location["metadata"].get("namespace") != NAMESPACE:
            return
        status = location.get("status") or {}
        if status.get("phase"):
            return
        location["status"] = {**status, "phase": "Available",
                              "lastValidationTime": ctx.clock.stamp()}
        ctx.write(location)

    # -- Schedule ------------------------------------------------------------------------------

    def reconcile_schedule(self, ctx: Ctx, schedule: JSON) -> None:
        """Validated like Velero's schedule controller; paused schedules are skipped (their
        phase stays what it was). The cron never fires here: see `run_schedule`."""
        spec = schedule.get("spec") or {}
        if schedule["metadata"].get("namespace") != NAMESPACE or spec.get("paused"):
            return
        status = schedule.get("status") or {}
        errors = schedule_errors(spec.get("schedule"))
        if errors:
            status.update(phase="FailedValidation", validationErrors=errors)
        else:
            status["phase"] = "Enabled"
            status.pop("validationErrors", None)
        schedule["status"] = status
        ctx.write(schedule)

    def run_schedule(self, ctx: Ctx, namespace: str, name: str) -> JSON | None:
        """Fire a schedule as Velero does when its cron comes due: a Backup from the template
        named `<schedule>-<YYYYMMDDhhmmss>`, labelled with the schedule, and
        `status.lastBackup`. None when one of its backups is still New or InProgress (Velero
        skips a run that would overlap). LookupError when there is no such Schedule,
        ValueError when it is paused or invalid."""
        schedule = ctx.get(GROUP, "Schedule", namespace, name)
        if schedule is None:
            raise LookupError(f'schedules.velero.io "{name}" not found')
        spec = schedule.get("spec") or {}
        if spec.get("paused"):
            raise ValueError(f"schedule {name} is paused: Velero does not fire it")
        errors = schedule_errors(spec.get("schedule"))
        if errors:
            raise ValueError(f"schedule {name} failed validation: {'; '.join(errors)}")
        running = ctx.list(GROUP, "Backup", namespace, {"matchLabels": {SCHEDULE_LABEL: name}},
                           lambda b: (b.get("status") or {}).get("phase", "") in (
                               "", "New", "InProgress"))
        if running:
            return None
        now = ctx.now()
        template = clone(spec.get("template") or {})
        labels = dict(((template.get("metadata") or {}).get("labels"))
                      or schedule["metadata"].get("labels") or {})
        labels[SCHEDULE_LABEL] = name
        meta: JSON = {"name": f"{name}-{now:%Y%m%d%H%M%S}", "namespace": namespace,
                      "labels": labels}
        if schedule["metadata"].get("annotations"):
            meta["annotations"] = dict(schedule["metadata"]["annotations"])
        if spec.get("useOwnerReferencesInBackup"):
            meta["ownerReferences"] = [{"apiVersion": API_VERSION, "kind": "Schedule",
                                        "name": name, "uid": schedule["metadata"]["uid"],
                                        "controller": True}]
        created = ctx.create({"apiVersion": API_VERSION, "kind": "Backup", "metadata": meta,
                              "spec": template})
        status = schedule.get("status") or {}
        status.setdefault("phase", "Enabled")
        status["lastBackup"] = fmt_time(now)
        schedule["status"] = status
        ctx.write(schedule)
        return created

    # -- Backup ----------------------------------------------------------------------------------

    def reconcile_backup(self, ctx: Ctx, backup: JSON) -> None:
        meta = backup["metadata"]
        if meta.get("namespace") != NAMESPACE:
            return
        phase = (backup.get("status") or {}).get("phase") or "New"
        with self._lock:
            if phase == "New":
                self._start_backup(ctx, backup)
                return
            run = self._backups.get(meta["uid"])
            if run is None:
                return  # not ours: written by a test, or finished
            if phase not in RUNNING:
                del self._backups[meta["uid"]]  # someone else decided how it ended
                return
            self._advance_backup(ctx, backup, run)

    def _start_backup(self, ctx: Ctx, backup: JSON) -> None:
        meta = backup["metadata"]
        spec = backup["spec"] = _spec_of(backup)
        status: JSON = {"version": 1, "formatVersion": "1.1.0"}
        errors: list[str] = []
        location_name, location = self._location(ctx, spec, errors)
        spec["storageLocation"] = location_name
        meta["labels"] = {**(meta.get("labels") or {}),
                          STORAGE_LOCATION_LABEL: location_name[:63]}
        meta["annotations"] = {
            **(meta.get("annotations") or {}),
            "velero.io/source-cluster-k8s-gitversion": VERSION["gitVersion"],
            "velero.io/source-cluster-k8s-major-version": VERSION["major"],
            "velero.io/source-cluster-k8s-minor-version": VERSION["minor"]}
        now = ctx.now()
        try:
            ttl = parse_duration(str(spec["ttl"])) if spec.get("ttl") else 0.0
            if ttl == 0:
                spec["ttl"], ttl = DEFAULT_TTL, parse_duration(DEFAULT_TTL)
            status["expiration"] = fmt_time(now + timedelta(seconds=ttl))
        except ValueError as exc:
            errors.append(f"Invalid ttl: {exc}")
        errors += _spec_errors(spec, "backup")
        if errors:
            status.update(phase="FailedValidation", validationErrors=errors)
            backup["status"] = status
            ctx.write(backup)
            return
        items = self._collect(ctx, spec)
        run = _BackupRun(items, self._script(self._backup_scripts, meta["name"]))
        location_status = (location or {}).get("status") or {}
        if location_status.get("phase") == "Unavailable":
            why = location_status.get("message") or (
                f'backup storage location "{location_name}" is unavailable')
            run.failure = f"error checking if backup already exists in object storage: {why}"
        status.update(phase="InProgress", startTimestamp=fmt_time(now),
                      progress={"totalItems": len(items)} if items else {})
        backup["status"] = status
        self._backups[meta["uid"]] = run
        ctx.write(backup)

    def _location(self, ctx: Ctx, spec: JSON, errors: list[str]) -> tuple[str, JSON | None]:
        """The storage location a backup goes to (Velero's prepareBackupRequest)."""
        name = str(spec.get("storageLocation") or "")
        if not name:
            marked = [loc for loc in ctx.list(GROUP, "BackupStorageLocation", NAMESPACE)
                      if (loc.get("spec") or {}).get("default")]
            name = marked[0]["metadata"]["name"] if marked else "default"
        location = ctx.get(GROUP, "BackupStorageLocation", NAMESPACE, name)
        if location is None:
            errors.append(
                f"an existing backup storage location wasn't specified at backup creation time "
                f"and the default '{name}' wasn't found. Please address this issue (see `velero "
                f"backup-location -h` for options) and create a new backup. Error: "
                f'backupstoragelocations.velero.io "{name}" not found')
        elif (location.get("spec") or {}).get("accessMode") == "ReadOnly":
            errors.append(f"backup can't be created because backup storage location {name} is "
                          "currently in read-only mode")
        return name, location

    def _collect(self, ctx: Ctx, spec: JSON) -> list[JSON]:
        """Copies of what the backup covers, taken when it starts (as Velero's item collector
        lists everything first): the Namespace objects of the included namespaces, then their
        namespaced objects of every recorded kind, by resource, namespace and name."""
        includes = _strings(spec.get("includedNamespaces"))
        includes = [] if includes == ["*"] else includes
        excludes = _strings(spec.get("excludedNamespaces"))
        namespaces = [ns for ns in ctx.list("", "Namespace")
                      if _matches(ns["metadata"]["name"], includes, excludes)]
        items = list(namespaces)
        kinds = sorted((t for t in ctx.types.all() if t.namespaced and not t.storage_version
                        and (t.group, t.kind) not in NOT_RECORDED),
                       key=lambda t: (t.plural, t.group))
        for rtype in kinds:
            if not _resource_included(rtype, spec):
                continue
            for ns in namespaces:
                items += ctx.api.store.list(rtype, ns["metadata"]["name"],
                                            lambda obj: _labels_match(spec, obj))
        return items

    def _advance_backup(self, ctx: Ctx, backup: JSON, run: _BackupRun) -> None:
        status, meta = backup["status"], backup["metadata"]
        script = run.script
        total, step = len(run.items), _step(len(run.items))
        if status["phase"] == "InProgress":
            failure = run.failure
            if failure is None and script is not None and script.outcome == "Failed" and (
                    run.done >= step or total == 0):
                failure = script.failure_reason
            if failure is not None:
                status.update(phase="Failed", failureReason=failure,
                              completionTimestamp=ctx.clock.stamp())
                if run.failure is None and script is not None:
                    _omit_zero(status, errors=script.errors, warnings=script.warnings)
                del self._backups[meta["uid"]]
                ctx.write(backup)
                return
            target = total // 2 if script is not None and script.outcome == "hang" else total
            if run.done < target:
                run.done = min(target, run.done + step)
                _omit_zero(status.setdefault("progress", {}), totalItems=total,
                           itemsBackedUp=run.done)
                ctx.write(backup)
                return
            if run.done < total:
                return  # hung: stays InProgress, progress frozen
            partial = script is not None and script.outcome == "PartiallyFailed"
            status["phase"] = "FinalizingPartiallyFailed" if partial else "Finalizing"
            _omit_zero(status, errors=script.errors if partial and script else 0,
                       warnings=script.warnings if script else 0)
            ctx.write(backup)
            return
        # Finalizing: the contents are in object storage, the backup is done.
        self._storage[meta["name"]] = _Stored(meta["uid"], run.items)
        status["phase"] = ("PartiallyFailed" if status["phase"] == "FinalizingPartiallyFailed"
                           else "Completed")
        status["completionTimestamp"] = ctx.clock.stamp()
        del self._backups[meta["uid"]]
        ctx.write(backup)

    # -- Restore ---------------------------------------------------------------------------------

    def reconcile_restore(self, ctx: Ctx, restore: JSON) -> None:
        meta = restore["metadata"]
        if meta.get("namespace") != NAMESPACE:
            return
        phase = (restore.get("status") or {}).get("phase") or "New"
        with self._lock:
            if phase == "New":
                self._start_restore(ctx, restore)
                return
            run = self._restores.get(meta["uid"])
            if run is None:
                return
            if phase not in RUNNING:
                del self._restores[meta["uid"]]
                return
            self._advance_restore(ctx, restore, run)

    def _start_restore(self, ctx: Ctx, restore: JSON) -> None:
        meta = restore["metadata"]
        spec = restore["spec"] = _spec_of(restore)
        excluded = _strings(spec.get("excludedResources"))
        spec["excludedResources"] = excluded + [r for r in NON_RESTORABLE if r not in excluded]
        errors = [f"{r} are non-restorable resources" for r in NON_RESTORABLE
                  if r in _strings(spec.get("includedResources"))]
        errors += _spec_errors(spec, "restore")
        policy = str(spec.get("existingResourcePolicy") or "")
        if policy not in ("", "none", "update"):
            errors.append(f"Invalid ExistingResourcePolicy: {policy}")
        backup = self._source_backup(ctx, spec, errors)
        status = restore.get("status") or {}
        if errors or backup is None:
            status.update(phase="FailedValidation", validationErrors=errors)
            restore["status"] = status
            ctx.write(restore)
            return
        backup_name = backup["metadata"]["name"]
        if not spec.get("scheduleName") and (backup["metadata"].get("labels") or {}).get(
                SCHEDULE_LABEL):
            spec["scheduleName"] = backup["metadata"]["labels"][SCHEDULE_LABEL]
        stored = self._storage.get(backup_name)
        run = _RestoreRun([], policy or "none", self._script(self._restore_scripts,
                                                              meta["name"]))
        if stored is None or stored.uid != backup["metadata"]["uid"]:
            run.failure = (f"error downloading backup: backup {backup_name} has no contents in "
                           "the simulated object storage")
        else:
            run.plan = self._plan(ctx, stored.items, spec, backup_name, meta["name"])
        status.update(phase="InProgress", startTimestamp=ctx.clock.stamp(),
                      progress={"totalItems": len(run.plan)} if run.plan else {})
        restore["status"] = status
        self._restores[meta["uid"]] = run
        ctx.write(restore)

    def _source_backup(self, ctx: Ctx, spec: JSON, errors: list[str]) -> JSON | None:
        backup_name, schedule = str(spec.get("backupName") or ""), spec.get("scheduleName")
        if bool(backup_name) == bool(schedule):
            errors.append("Either a backup or schedule must be specified as a source for the "
                          "restore, but not both")
            return None
        if schedule:
            made = ctx.list(GROUP, "Backup", NAMESPACE,
                            {"matchLabels": {SCHEDULE_LABEL: str(schedule)}})
            if not made:
                errors.append("No backups found for schedule")
            done = sorted((b for b in made if (b.get("status") or {}).get("phase")
                           == "Completed"),
                          key=lambda b: str(b["status"].get("startTimestamp") or ""))
            if not done:
                errors.append("No completed backups found for schedule")
                return None
            backup_name = done[-1]["metadata"]["name"]
            spec["backupName"] = backup_name
        backup = ctx.get(GROUP, "Backup", NAMESPACE, backup_name)
        if backup is None:
            errors.append(f'Error retrieving backup: backups.velero.io "{backup_name}" not found')
            return None
        phase = (backup.get("status") or {}).get("phase") or "New"
        if phase not in ("Completed", "PartiallyFailed"):
            errors.append(f"backup {backup_name} is in phase {phase}: only Completed or "
                          "PartiallyFailed backups can be restored")
            return None
        return backup

    def _plan(self, ctx: Ctx, items: list[JSON], spec: JSON, backup: str, restore: str
              ) -> list[JSON]:
        """The objects to create, in Velero's restore order, filtered by the restore's
        namespaces (as backed up), resources and labels, with namespaces mapped."""
        includes = _strings(spec.get("includedNamespaces"))
        includes = [] if includes == ["*"] else includes
        excludes = _strings(spec.get("excludedNamespaces"))
        mapping = spec.get("namespaceMapping") or {}
        plan = []
        for obj in items:
            meta = obj["metadata"]
            is_namespace = _group_kind(obj) == ("", "Namespace")
            source = meta["name"] if is_namespace else meta.get("namespace", "")
            if not _matches(source, includes, excludes):
                continue
            target = str(mapping.get(source, source))
            if is_namespace:
                desired = _restorable(obj, None, spec, backup, restore)
                desired["metadata"]["name"] = target
                (desired["metadata"].get("labels") or {}).pop("kubernetes.io/metadata.name", None)
                plan.append(desired)
                continue
            rtype = ctx.types.by_kind(*_group_kind(obj))
            if rtype is not None and not _resource_included(rtype, spec):
                continue
            if not _labels_match(spec, obj):
                continue
            plan.append(_restorable(obj, target, spec, backup, restore))
        return sorted(plan, key=_restore_order)

    def _advance_restore(self, ctx: Ctx, restore: JSON, run: _RestoreRun) -> None:
        status, script = restore["status"], run.script
        total, step = len(run.plan), _step(len(run.plan))
        if status["phase"] == "InProgress":
            failure = run.failure
            if failure is None and script is not None and script.outcome == "Failed" and (
                    run.done >= step or total == 0):
                failure = script.failure_reason
                run.errors["velero"].append(failure)
            if failure is not None:
                status.update(phase="Failed", failureReason=failure,
                              completionTimestamp=ctx.clock.stamp())
                self._finish(restore, run)
                ctx.write(restore)
                return
            target = total // 2 if script is not None and script.outcome == "hang" else total
            if run.done < target:
                end = min(target, run.done + step)
                for desired in run.plan[run.done:end]:
                    self._restore_item(ctx, run, desired)
                run.done = end
                _omit_zero(status.setdefault("progress", {}), totalItems=total,
                           itemsRestored=run.done)
                ctx.write(restore)
                return
            if run.done < total:
                return  # hung
            if script is not None and script.outcome == "PartiallyFailed":
                run.errors["velero"] += [script.failure_reason] * script.errors
            if script is not None:
                run.warnings["velero"] += ["scripted warning (simulated)"] * script.warnings
            errors = _count(run.errors)
            _omit_zero(status, warnings=_count(run.warnings), errors=errors)
            status["phase"] = "FinalizingPartiallyFailed" if errors else "Finalizing"
            ctx.write(restore)
            return
        status["phase"] = ("PartiallyFailed" if status["phase"] == "FinalizingPartiallyFailed"
                           else "Completed")
        status["completionTimestamp"] = ctx.clock.stamp()
        self._finish(restore, run)
        ctx.write(restore)

    def _finish(self, restore: JSON, run: _RestoreRun) -> None:
        meta = restore["metadata"]
        self._restore_results[meta["name"]] = (meta["uid"], {"warnings": run.warnings,
                                                             "errors": run.errors})
        del self._restores[meta["uid"]]

    def _restore_item(self, ctx: Ctx, run: _RestoreRun, desired: JSON) -> None:
        group, kind = _group_kind(desired)
        meta = desired["metadata"]
        namespace, name = meta.get("namespace", ""), meta["name"]
        rtype = ctx.types.by_kind(group, kind)
        what = f"{rtype.plural if rtype else kind.lower()}{'.' + group if group else ''}"
        try:
            if rtype is None:
                raise ApiError(404, f"the server doesn't have a resource type {kind}")
            if kind == "Namespace" and not group:
                if ctx.get("", "Namespace", "", name) is None:
                    ctx.create(desired)
                return
            if ctx.get("", "Namespace", "", namespace) is None:
                ctx.create({"apiVersion": "v1", "kind": "Namespace",
                            "metadata": {"name": namespace}})
            existing = ctx.api.store.get(rtype, namespace, name)
            if existing is None:
                ctx.create(desired)
                return
        except ApiError as exc:
            _add(run.errors, namespace, f"error restoring {what}/{namespace}/{name}: "
                                        f"{exc.message}")
            return
        if _comparable(rtype, existing) == _comparable(rtype, desired):
            return  # the same as the backed-up version: skipped quietly
        if run.policy != "update":
            _add(run.warnings, namespace, EXISTS_WARNING.format(kind=kind, name=name))
            return
        # Velero patches the in-cluster object to the backed-up version.
        updated = {k: clone(v) for k, v in desired.items()}
        if "status" in existing:
            updated["status"] = existing["status"]
        updated["metadata"] = {**existing["metadata"],
                               "labels": desired["metadata"].get("labels") or {},
                               "annotations": desired["metadata"].get("annotations") or {}}
        route = Route(rtype.group, rtype.version, rtype.plural,
                      namespace if rtype.namespaced else None, name)
        try:
            ctx.api.replace(route, updated)
        except ApiError as exc:
            _add(run.warnings, namespace, f'could not restore, {kind} "{name}" already exists '
                                          f"and could not be updated: {exc.message}")

    # -- housekeeping ------------------------------------------------------------------------

    def forget_deleted(self, ctx: Ctx) -> None:
        """A deleted Backup takes its contents with it (as `velero backup delete` does); runs
        and results of deleted objects are dropped."""
        with self._lock:
            if not (self._storage or self._backups or self._restores or self._restore_results):
                return
            backups = {b["metadata"]["uid"]: b["metadata"]["name"]
                       for b in ctx.list(GROUP, "Backup", NAMESPACE)}
            restores = {r["metadata"]["uid"] for r in ctx.list(GROUP, "Restore", NAMESPACE)}
            for name, stored in list(self._storage.items()):
                if backups.get(stored.uid) != name:
                    del self._storage[name]
            for uid in [u for u in self._backups if u not in backups]:
                del self._backups[uid]
            for uid in [u for u in self._restores if u not in restores]:
                del self._restores[uid]
            for name, (uid, _) in list(self._restore_results.items()):
                if uid not in restores:
                    del self._restore_results[name]

