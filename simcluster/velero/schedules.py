"""Schedules, as Velero's schedule controller validates them. The cron never fires in the
simulation: `run_schedule` does what Velero does when it comes due, on request."""

from __future__ import annotations

from ..clock import fmt_time
from ..controllers import Ctx
from ..store import clone
from .common import API_VERSION, GROUP, JSON, NAMESPACE, SCHEDULE_LABEL
from .cron import schedule_errors


def reconcile_schedule(ctx: Ctx, schedule: JSON) -> None:
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


def run_schedule(ctx: Ctx, namespace: str, name: str) -> JSON | None:
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
