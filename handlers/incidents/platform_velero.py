"""`incident.velero_backup` for VeleroBackupFailed / VeleroBackupPartialFailure: the latest
`velero.io/v1` Backups of the schedule (phase, errors and warnings, failure reason, times), the
Schedule itself and the storage location the backups go to, condensed into the likely cause.
A "Retry backup" button runs `backup create` when the backups' app or namespace is known."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from bot.errors import NotFound
from bot.markup import code
from bot.names import is_dns1123_label
from bot.registry import HandlerContext, Result, handler
from handlers.incident import AlertParams, diagnosis, parse_time
from handlers.incidents.platform_common import check_name, stamp

__all__ = ["VeleroParams", "velero_backup"]

GROUP, VERSION = "velero.io", "v1"
SCHEDULE_LABEL = "velero.io/schedule-name"
FAILED = ("Failed", "PartiallyFailed", "FailedValidation", "FinalizingPartiallyFailed")
RUNNING = ("New", "InProgress", "WaitingForPluginOperations",
           "WaitingForPluginOperationsPartiallyFailed", "Finalizing")
Obj = dict[str, Any]


class VeleroParams(AlertParams):
    schedule: str
    velero_namespace: str = "velero"
    count: int = Field(default=5, ge=1, le=50)  # backups shown, newest first

    _schedule = field_validator("schedule")(lambda v: check_name(v, "schedule"))

    @field_validator("velero_namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not is_dns1123_label(value):
            raise ValueError("velero_namespace must be a DNS-1123 label")
        return value


def _started(backup: Obj) -> str:
    status = backup.get("status") or {}
    return str(status.get("startTimestamp") or backup["metadata"].get("creationTimestamp", ""))


@handler("incident.velero_backup", params=VeleroParams)
async def velero_backup(*, ctx: HandlerContext, params: VeleroParams, **_: object) -> Result:
    """The latest Velero backups of a schedule, why the last ones failed, and how to retry."""
    namespace, name = params.velero_namespace, params.schedule
    custom = ctx.kube.custom
    try:
        schedule: Obj | None = await ctx.kube.call(
            custom.get_namespaced_custom_object, GROUP, VERSION, namespace, "schedules", name)
    except NotFound:
        schedule = None
    try:
        listed = await ctx.kube.call(custom.list_namespaced_custom_object, GROUP, VERSION,
                                     namespace, "backups",
                                     label_selector=f"{SCHEDULE_LABEL}={name}")
    except NotFound:
        listed = {"items": []}
    backups = sorted(listed.get("items") or [], key=_started, reverse=True)[: params.count]
    latest = backups[0] if backups else None
    location = await _location(ctx, namespace, latest)
    await ctx.progress(f"{len(backups)} backups of {name} read")

    retry = (f"retry after fixing the cause: velero backup create --from-schedule {name} "
             f"-n {namespace} (opsbot's {code('backup create')} comes with the Velero runbooks)")
    if latest is None:
        what = f"Velero schedule {name}: no backups found in {namespace}"
        cause = _no_backups(schedule, name, namespace)
    else:
        status = latest.get("status") or {}
        phase = status.get("phase") or "New"
        what = f"Velero backup {latest['metadata']['name']} of schedule {name}: {phase}"
        cause = _cause(latest, backups, location)
    failed = [b for b in backups if (b.get("status") or {}).get("phase") in FAILED]
    evidence = [
        ("Schedule", _schedule_text(schedule, name)),
        ("Storage location", location["text"]),
        ("Recent backups", f"{len(failed)} of the last {len(backups)} failed or partly failed"),
    ]
    if latest is not None:
        evidence.append(("Latest", _backup_text(latest)))
    evidence.append(("Retry", retry))
    output = "\n".join(["BACKUP  PHASE  ERRORS  WARNINGS  STARTED  COMPLETED"] + [
        "  ".join((b["metadata"]["name"], str((b.get("status") or {}).get("phase") or "New"),
                   str((b.get("status") or {}).get("errors", 0)),
                   str((b.get("status") or {}).get("warnings", 0)),
                   stamp(parse_time((b.get("status") or {}).get("startTimestamp"))),
                   stamp(parse_time((b.get("status") or {}).get("completionTimestamp")))))
        for b in backups]) if backups else None
    since = None
    if params.alert is None and latest is not None:
        since = parse_time(_started(latest))
    return diagnosis(
        what=what, cause=cause, alert=params.alert, since=since, evidence=evidence,
        output=output,
        data={"schedule": name, "backup": latest["metadata"]["name"] if latest else None,
              "phase": ((latest or {}).get("status") or {}).get("phase"),
              "failed_recent": len(failed), "checked": len(backups),
              "storage_location": location["name"],
              "storage_available": location["available"], "retry": retry,
              **_retry_target(ctx, schedule, latest)},
    )


def _retry_target(ctx: HandlerContext, schedule: Obj | None, latest: Obj | None
                  ) -> dict[str, str | None]:
    """What `backup create` would retry: the app (opsbot's labels) or the one namespace the
    backups hold, in the configured environment owning that namespace; None when unknown."""
    for obj in (schedule, latest):
        if obj is None:
            continue
        labels = obj["metadata"].get("labels") or {}
        spec = obj.get("spec") or {}
        spec = spec.get("template") or spec
        namespaces = spec.get("includedNamespaces") or []
        envs = [e for e in ctx.settings.environments.values() if e.namespace in namespaces]
        if len(namespaces) != 1 or len(envs) != 1:
            continue
        env = envs[0]
        app = labels.get("opsbot.io/app")
        if app and app in ctx.settings.apps_in(env.name):
            return {"retry_target": str(app), "retry_environment": env.name}
        if not spec.get("labelSelector"):
            return {"retry_target": env.namespace, "retry_environment": env.name}
    return {"retry_target": None, "retry_environment": None}


async def _location(ctx: HandlerContext, namespace: str, backup: Obj | None) -> dict[str, Any]:
    name = str(((backup or {}).get("spec") or {}).get("storageLocation") or "default")
    found: dict[str, Any] = {"name": name, "available": None, "text": f"{name}: not found"}
    try:
        bsl = await ctx.kube.call(ctx.kube.custom.get_namespaced_custom_object, GROUP, VERSION,
                                  namespace, "backupstoragelocations", name)
    except NotFound:
        return found
    status = bsl.get("status") or {}
    phase = status.get("phase") or "Unknown"
    found["available"] = phase == "Available"
    found["text"] = f"{name}: {phase}"
    if status.get("message"):
        found["text"] += f" ({str(status['message'])[:200]})"
    if status.get("lastValidationTime"):
        found["text"] += f", validated {stamp(parse_time(status['lastValidationTime']))}"
    return found


def _no_backups(schedule: Obj | None, name: str, namespace: str) -> str:
    if schedule is None:
        return f"there is no Schedule {name} in {namespace} (deleted or renamed?)"
    spec, status = schedule.get("spec") or {}, schedule.get("status") or {}
    if status.get("phase") == "FailedValidation":
        return "the schedule failed validation: " + "; ".join(status.get("validationErrors")
                                                              or ["no details"])
    if spec.get("paused"):
        return "the schedule is paused"
    return ("the schedule has not created a backup yet (is the Velero server running?); "
            f"last backup {stamp(parse_time(status.get('lastBackup')))}")


def _cause(latest: Obj, backups: list[Obj], location: dict[str, Any]) -> str:
    status = latest.get("status") or {}
    phase = status.get("phase") or "New"
    if phase == "FailedValidation":
        return "the backup failed validation: " + "; ".join(
            status.get("validationErrors") or ["no details"])
    if phase == "Failed":
        if location["available"] is False:
            return f"the backup storage location is unavailable: {location['text']}"
        if status.get("failureReason"):
            return f"the backup failed: {status['failureReason']}"
        return f"the backup failed without a reason; see {code('velero backup logs')}"
    if phase in ("PartiallyFailed", "FinalizingPartiallyFailed"):
        return (f"{status.get('errors', 0)} items could not be backed up "
                f"({status.get('warnings', 0)} warnings); the details are in "
                f"{code('velero backup logs ' + latest['metadata']['name'])}")
    earlier = [b for b in backups[1:] if (b.get("status") or {}).get("phase") in FAILED]
    if phase in RUNNING:
        return (f"a backup is running now ({phase})"
                + (f"; the one before it {_phase(earlier[0])}" if earlier else ""))
    if phase == "Completed":
        if earlier:
            return (f"the latest backup completed; {len(earlier)} earlier ones failed "
                    f"(last: {earlier[0]['metadata']['name']}, {_phase(earlier[0])})")
        return "the latest backups completed; the alert counts an older failure"
    return f"the latest backup is {phase}"


def _phase(backup: Obj) -> str:
    status = backup.get("status") or {}
    text = str(status.get("phase") or "New")
    if status.get("failureReason"):
        text += f": {status['failureReason']}"
    return text


def _schedule_text(schedule: Obj | None, name: str) -> str:
    if schedule is None:
        return f"{name}: not found"
    spec, status = schedule.get("spec") or {}, schedule.get("status") or {}
    text = f"{name}: '{spec.get('schedule', '?')}', {status.get('phase') or 'New'}"
    if spec.get("paused"):
        text += ", paused"
    return text + f", last backup {stamp(parse_time(status.get('lastBackup')))}"


def _backup_text(backup: Obj) -> str:
    status = backup.get("status") or {}
    text = (f"{backup['metadata']['name']}: {status.get('phase') or 'New'}, "
            f"{status.get('errors', 0)} errors, {status.get('warnings', 0)} warnings")
    progress = status.get("progress") or {}
    if progress.get("totalItems"):
        text += f", {progress.get('itemsBackedUp', 0)}/{progress['totalItems']} items"
    text += (f", started {stamp(parse_time(status.get('startTimestamp')))}"
             f", completed {stamp(parse_time(status.get('completionTimestamp')))}")
    if status.get("failureReason"):
        text += f"; {status['failureReason']}"
    return text
