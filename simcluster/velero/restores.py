"""Restores, as Velero's restore controller runs them: validated against their source backup
and spec, planned from the backup's contents in object storage, created a third per pass
through the API like any client's, with warnings and errors grouped as Velero's results file
groups them."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from ..controllers import Ctx
from ..errors import ApiError
from ..routing import Route
from ..store import clone
from .backups import Backups
from .common import (
    GROUP,
    JSON,
    NAMESPACE,
    RUNNING,
    SCHEDULE_LABEL,
    group_kind,
    omit_zero,
    spec_of,
    step,
    strings,
)
from .restore_items import comparable, restorable, restore_order
from .scripts import OutcomeScript, script_for
from .selection import labels_match, matches, namespace_filter, resource_included, spec_errors

# Velero appends these to every restore's spec.excludedResources.
NON_RESTORABLE = ["nodes", "events", "events.events.k8s.io", "backups.velero.io",
                  "restores.velero.io", "resticrepositories.velero.io",
                  "csinodes.storage.k8s.io", "volumeattachments.storage.k8s.io",
                  "backuprepositories.velero.io"]
EXISTS_WARNING = ('could not restore, {kind} "{name}" already exists. Warning: the in-cluster '
                  "version is different than the backed-up version")


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
class RestoreRun:
    plan: list[JSON]
    policy: str
    script: OutcomeScript | None
    failure: str | None = None  # the backup's contents are not in object storage
    done: int = 0
    warnings: JSON = field(default_factory=_results)
    errors: JSON = field(default_factory=_results)


class Restores:
    """The restore controller's state: scripts, runs in progress (by Restore uid) and the
    results of finished restores (by name), guarded by the Velero server's lock. Contents
    come from `backups`' object storage."""

    def __init__(self, lock: threading.RLock, backups: Backups) -> None:
        self._lock = lock
        self._backups = backups
        self.scripts: list[OutcomeScript] = []
        self.runs: dict[str, RestoreRun] = {}  # by Restore uid
        self.finished: dict[str, tuple[str, JSON]] = {}  # by restore name: (uid, results)

    def results(self, restore_name: str) -> JSON | None:
        with self._lock:
            found = self.finished.get(restore_name)
            return clone(found[1]) if found is not None else None

    def holds_nothing(self) -> bool:
        return not (self.runs or self.finished)

    def forget(self, existing: set[str]) -> None:
        """Drop the runs and results of Restores whose uid is not in `existing`."""
        for uid in [u for u in self.runs if u not in existing]:
            del self.runs[uid]
        for name, (uid, _) in list(self.finished.items()):
            if uid not in existing:
                del self.finished[name]

    def reconcile(self, ctx: Ctx, restore: JSON) -> None:
        meta = restore["metadata"]
        if meta.get("namespace") != NAMESPACE:
            return
        phase = (restore.get("status") or {}).get("phase") or "New"
        with self._lock:
            if phase == "New":
                self._start(ctx, restore)
                return
            run = self.runs.get(meta["uid"])
            if run is None:
                return
            if phase not in RUNNING:
                del self.runs[meta["uid"]]
                return
            self._advance(ctx, restore, run)

    def _start(self, ctx: Ctx, restore: JSON) -> None:
        meta = restore["metadata"]
        spec = restore["spec"] = spec_of(restore)
        excluded = strings(spec.get("excludedResources"))
        spec["excludedResources"] = excluded + [r for r in NON_RESTORABLE if r not in excluded]
        errors = [f"{r} are non-restorable resources" for r in NON_RESTORABLE
                  if r in strings(spec.get("includedResources"))]
        errors += spec_errors(spec, "restore")
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
        stored = self._backups.storage.get(backup_name)
        run = RestoreRun([], policy or "none", script_for(self.scripts, meta["name"]))
        if stored is None or stored.uid != backup["metadata"]["uid"]:
            run.failure = (f"error downloading backup: backup {backup_name} has no contents in "
                           "the simulated object storage")
        else:
            run.plan = self._plan(ctx, stored.items, spec, backup_name, meta["name"])
        status.update(phase="InProgress", startTimestamp=ctx.clock.stamp(),
                      progress={"totalItems": len(run.plan)} if run.plan else {})
        restore["status"] = status
        self.runs[meta["uid"]] = run
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
        includes, excludes = namespace_filter(spec)
        mapping = spec.get("namespaceMapping") or {}
        plan = []
        for obj in items:
            meta = obj["metadata"]
            is_namespace = group_kind(obj) == ("", "Namespace")
            source = meta["name"] if is_namespace else meta.get("namespace", "")
            if not matches(source, includes, excludes):
                continue
            target = str(mapping.get(source, source))
            if is_namespace:
                desired = restorable(obj, None, spec, backup, restore)
                desired["metadata"]["name"] = target
                (desired["metadata"].get("labels") or {}).pop("kubernetes.io/metadata.name", None)
                plan.append(desired)
                continue
            rtype = ctx.types.by_kind(*group_kind(obj))
            if rtype is not None and not resource_included(rtype, spec):
                continue
            if not labels_match(spec, obj):
                continue
            plan.append(restorable(obj, target, spec, backup, restore))
        return sorted(plan, key=restore_order)

    def _advance(self, ctx: Ctx, restore: JSON, run: RestoreRun) -> None:
        status, script = restore["status"], run.script
        total, per_pass = len(run.plan), step(len(run.plan))
        if status["phase"] == "InProgress":
            failure = run.failure
            if failure is None and script is not None and script.outcome == "Failed" and (
                    run.done >= per_pass or total == 0):
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
                end = min(target, run.done + per_pass)
                for desired in run.plan[run.done:end]:
                    self._restore_item(ctx, run, desired)
                run.done = end
                omit_zero(status.setdefault("progress", {}), totalItems=total,
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
            omit_zero(status, warnings=_count(run.warnings), errors=errors)
            status["phase"] = "FinalizingPartiallyFailed" if errors else "Finalizing"
            ctx.write(restore)
            return
        status["phase"] = ("PartiallyFailed" if status["phase"] == "FinalizingPartiallyFailed"
                           else "Completed")
        status["completionTimestamp"] = ctx.clock.stamp()
        self._finish(restore, run)
        ctx.write(restore)

    def _finish(self, restore: JSON, run: RestoreRun) -> None:
        meta = restore["metadata"]
        self.finished[meta["name"]] = (meta["uid"], {"warnings": run.warnings,
                                                     "errors": run.errors})
        del self.runs[meta["uid"]]

    def _restore_item(self, ctx: Ctx, run: RestoreRun, desired: JSON) -> None:
        group, kind = group_kind(desired)
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
        if comparable(rtype, existing) == comparable(rtype, desired):
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
