"""Backups, as Velero's backup controller runs them: validated against their storage location
and spec, their items collected when they start, moved a third per pass, then recorded in the
simulated object storage (held here, never in the cluster). Storage locations are validated
here too: a backup is only as good as the location it goes to."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import timedelta

from ..clock import fmt_time
from ..controllers import Ctx
from ..discovery import VERSION
from ..store import clone
from .common import (
    GROUP,
    JSON,
    NAMESPACE,
    RUNNING,
    STORAGE_LOCATION_LABEL,
    omit_zero,
    spec_of,
    step,
)
from .cron import parse_duration
from .scripts import OutcomeScript, script_for
from .selection import labels_match, matches, namespace_filter, resource_included, spec_errors

DEFAULT_TTL = "720h0m0s"
# Not recorded: derived from or restored through their owners (pods, replica sets, controller
# revisions, endpoints), or never restored by Velero (events, its own backups and restores).
NOT_RECORDED = {("", "Pod"), ("apps", "ReplicaSet"), ("apps", "ControllerRevision"),
                ("", "Endpoints"), ("", "Event"), (GROUP, "Backup"), (GROUP, "Restore")}


@dataclass
class BackupRun:
    items: list[JSON]
    script: OutcomeScript | None
    failure: str | None = None  # the storage location was unavailable
    done: int = 0


@dataclass(frozen=True)
class Stored:
    """A completed backup's contents in object storage, with the uid of the Backup they
    belong to (a new Backup of the same name does not inherit them)."""

    uid: str
    items: list[JSON]


def reconcile_location(ctx: Ctx, location: JSON) -> None:
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


class Backups:
    """The backup controller's state: scripts, runs in progress (by Backup uid) and the object
    storage of completed backups (by name), guarded by the Velero server's lock."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self.scripts: list[OutcomeScript] = []
        self.runs: dict[str, BackupRun] = {}  # by Backup uid
        self.storage: dict[str, Stored] = {}  # by backup name

    def contents(self, backup_name: str) -> list[JSON] | None:
        with self._lock:
            stored = self.storage.get(backup_name)
            return clone(stored.items) if stored is not None else None

    def holds_nothing(self) -> bool:
        return not (self.storage or self.runs)

    def forget(self, existing: dict[str, str]) -> None:
        """Drop the contents and runs of Backups no longer in `existing` (uid → name)."""
        for name, stored in list(self.storage.items()):
            if existing.get(stored.uid) != name:
                del self.storage[name]
        for uid in [u for u in self.runs if u not in existing]:
            del self.runs[uid]

    def reconcile(self, ctx: Ctx, backup: JSON) -> None:
        meta = backup["metadata"]
        if meta.get("namespace") != NAMESPACE:
            return
        phase = (backup.get("status") or {}).get("phase") or "New"
        with self._lock:
            if phase == "New":
                self._start(ctx, backup)
                return
            run = self.runs.get(meta["uid"])
            if run is None:
                return  # not ours: written by a test, or finished
            if phase not in RUNNING:
                del self.runs[meta["uid"]]  # someone else decided how it ended
                return
            self._advance(ctx, backup, run)

    def _start(self, ctx: Ctx, backup: JSON) -> None:
        meta = backup["metadata"]
        spec = backup["spec"] = spec_of(backup)
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
        errors += spec_errors(spec, "backup")
        if errors:
            status.update(phase="FailedValidation", validationErrors=errors)
            backup["status"] = status
            ctx.write(backup)
            return
        items = self._collect(ctx, spec)
        run = BackupRun(items, script_for(self.scripts, meta["name"]))
        location_status = (location or {}).get("status") or {}
        if location_status.get("phase") == "Unavailable":
            why = location_status.get("message") or (
                f'backup storage location "{location_name}" is unavailable')
            run.failure = f"error checking if backup already exists in object storage: {why}"
        status.update(phase="InProgress", startTimestamp=fmt_time(now),
                      progress={"totalItems": len(items)} if items else {})
        backup["status"] = status
        self.runs[meta["uid"]] = run
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
        includes, excludes = namespace_filter(spec)
        namespaces = [ns for ns in ctx.list("", "Namespace")
                      if matches(ns["metadata"]["name"], includes, excludes)]
        items = list(namespaces)
        kinds = sorted((t for t in ctx.types.all() if t.namespaced and not t.storage_version
                        and (t.group, t.kind) not in NOT_RECORDED),
                       key=lambda t: (t.plural, t.group))
        for rtype in kinds:
            if not resource_included(rtype, spec):
                continue
            for ns in namespaces:
                items += ctx.api.store.list(rtype, ns["metadata"]["name"],
                                            lambda obj: labels_match(spec, obj))
        return items

    def _advance(self, ctx: Ctx, backup: JSON, run: BackupRun) -> None:
        status, meta = backup["status"], backup["metadata"]
        script = run.script
        total, per_pass = len(run.items), step(len(run.items))
        if status["phase"] == "InProgress":
            failure = run.failure
            if failure is None and script is not None and script.outcome == "Failed" and (
                    run.done >= per_pass or total == 0):
                failure = script.failure_reason
            if failure is not None:
                status.update(phase="Failed", failureReason=failure,
                              completionTimestamp=ctx.clock.stamp())
                if run.failure is None and script is not None:
                    omit_zero(status, errors=script.errors, warnings=script.warnings)
                del self.runs[meta["uid"]]
                ctx.write(backup)
                return
            target = total // 2 if script is not None and script.outcome == "hang" else total
            if run.done < target:
                run.done = min(target, run.done + per_pass)
                omit_zero(status.setdefault("progress", {}), totalItems=total,
                          itemsBackedUp=run.done)
                ctx.write(backup)
                return
            if run.done < total:
                return  # hung: stays InProgress, progress frozen
            partial = script is not None and script.outcome == "PartiallyFailed"
            status["phase"] = "FinalizingPartiallyFailed" if partial else "Finalizing"
            omit_zero(status, errors=script.errors if partial and script else 0,
                      warnings=script.warnings if script else 0)
            ctx.write(backup)
            return
        # Finalizing: the contents are in object storage, the backup is done.
        self.storage[meta["name"]] = Stored(meta["uid"], run.items)
        status["phase"] = ("PartiallyFailed" if status["phase"] == "FinalizingPartiallyFailed"
                           else "Completed")
        status["completionTimestamp"] = ctx.clock.stamp()
        del self.runs[meta["uid"]]
        ctx.write(backup)
