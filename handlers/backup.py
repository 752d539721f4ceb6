"""`backup ...`: Velero Backups, Restores and Schedules of an environment's namespace, made one
command away and followed to the end (progress, warnings, errors) instead of fire-and-forget."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import time
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
import yaml
from pydantic import Field, field_validator

from bot.config import AppConfig
from bot.errors import NotFound, PermanentError, Refused, RetryableError, UsageError
from bot.messages import rough_span
from bot.names import is_dns1123_label, is_dns1123_subdomain, shown
from bot.registry import HandlerContext, Params, Result, handler
from bot.runbooks.params import parse_duration
from handlers.deploy.strategy import pod_labels

__all__ = [
    "BackupCreateParams",
    "BackupNameParams",
    "BackupRestoreParams",
    "ListParams",
    "ScheduleParams",
    "backup_create",
    "backup_describe",
    "backup_list",
    "backup_pause",
    "backup_restore",
    "backup_schedule",
    "backup_schedules",
    "backup_unpause",
    "check_cron",
    "go_duration",
]

GROUP, VERSION = "velero.io", "v1"
APP_LABEL, ENV_LABEL = "opsbot.io/app", "opsbot.io/environment"
EXECUTION_ANNOTATION = "opsbot.io/execution-id"
DONE = ("Completed", "PartiallyFailed", "Failed", "FailedValidation")
RESTORABLE = ("Completed", "PartiallyFailed")
POLL_SECONDS = 2.0  # how often a running Backup or Restore is read again (tests lower it)
# Kinds checked for objects a restore would overwrite: (plural as Velero names it, kind, lister).
CHECKED_KINDS = (
    ("deployments", "Deployment", "apps", "list_namespaced_deployment"),
    ("statefulsets", "StatefulSet", "apps", "list_namespaced_stateful_set"),
    ("services", "Service", "core", "list_namespaced_service"),
    ("configmaps", "ConfigMap", "core", "list_namespaced_config_map"),
    ("secrets", "Secret", "core", "list_namespaced_secret"),
    ("persistentvolumeclaims", "PersistentVolumeClaim", "core",
     "list_namespaced_persistent_volume_claim"),
    ("serviceaccounts", "ServiceAccount", "core", "list_namespaced_service_account"),
)
Obj = dict[str, Any]


def go_duration(text: str) -> str:
    """`1d12h` (opsbot's duration) as the Go duration Velero's `ttl` takes: `36h0m0s`."""
    seconds = int(parse_duration(text).total_seconds())
    return f"{seconds // 3600}h{seconds % 3600 // 60}m{seconds % 60}s"


_CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
                ("day of week", 0, 7))
_NAMES = {3: ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
          4: ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]}


def check_cron(text: str) -> str:
    """A standard 5-field cron expression (as Velero's Schedule takes it), or ValueError."""
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(f"`{shown(text)}` has {len(fields)} fields; a cron expression has 5 "
                         "(minute hour day-of-month month day-of-week), e.g. \"0 3 * * *\"")
    for index, (field_text, (what, low, high)) in enumerate(zip(fields, _CRON_FIELDS,
                                                                 strict=True)):
        for part in field_text.split(","):
            base, slash, step = part.partition("/")
            if slash and not (step.isdigit() and int(step) >= 1):
                raise ValueError(f"{what}: `{shown(part)}` has a bad step")
            if base == "*":
                continue
            for bound in base.split("-", 1):
                value = _cron_value(bound, index)
                if value is None or not low <= value <= high:
                    raise ValueError(f"{what}: `{shown(bound)}` is not a value from {low} "
                                     f"to {high}")
    return " ".join(fields)


def _cron_value(text: str, index: int) -> int | None:
    if text.isdigit():
        return int(text)
    names = _NAMES.get(index, [])
    if text.lower() in names:
        return names.index(text.lower()) + (1 if index == 3 else 0)
    return None


def _now() -> datetime:
    return datetime.now(UTC)


def _timestamp(ctx: HandlerContext) -> str:
    # A dry run (also the plan an approver sees, whose digest must not change before the
    # approved run) names the timestamp instead of giving one.
    return "<yyyymmddhhmmss>" if ctx.dry_run else _now().strftime("%Y%m%d%H%M%S")


def _status(obj: Obj) -> Obj:
    return obj.get("status") or {}


def _spec(obj: Obj) -> Obj:
    return obj.get("spec") or {}


def _name(obj: Obj) -> str:
    return str(obj["metadata"]["name"])


def _includes(obj: Obj, namespace: str) -> bool:
    included = _spec(obj).get("includedNamespaces") or ["*"]
    return namespace in included or "*" in included


def _time(text: Any) -> str:
    if not text:
        return "-"
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return str(text)[:40]
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _items(status: Obj, done_key: str = "itemsBackedUp") -> str:
    progress = status.get("progress") or {}
    if not progress.get("totalItems"):
        return "-"
    return f"{progress.get(done_key, 0)}/{progress['totalItems']}"


def _dump(body: Obj) -> str:
    return yaml.safe_dump(body, sort_keys=False, default_flow_style=False).rstrip()


def _check_duration(value: str | None) -> str | None:
    if value is not None:
        try:
            parse_duration(value)
        except UsageError as exc:
            raise ValueError(str(exc)) from None
    return value


def _timeout(text: str) -> float:
    seconds = parse_duration(text).total_seconds()
    if seconds <= 0:
        raise ValueError("timeout must be more than 0s")
    return seconds


# -- reading Velero objects ---------------------------------------------------------------


async def _get(ctx: HandlerContext, plural: str, name: str) -> Obj | None:
    try:
        found: Obj = await ctx.kube.call(ctx.kube.custom.get_namespaced_custom_object, GROUP,
                                         VERSION, ctx.settings.backup.namespace, plural, name)
    except NotFound:
        return None
    return found


async def _list(ctx: HandlerContext, plural: str) -> list[Obj]:
    try:
        listed = await ctx.kube.call(ctx.kube.custom.list_namespaced_custom_object, GROUP,
                                     VERSION, ctx.settings.backup.namespace, plural)
    except NotFound:
        raise PermanentError(
            f"Velero's {plural} are not served: is Velero installed (namespace "
            f"{ctx.settings.backup.namespace})?") from None
    return list(listed.get("items") or [])


async def _backup_of_env(ctx: HandlerContext, name: str) -> Obj:
    """The named Backup, provided it holds this environment's namespace."""
    backup = await _get(ctx, "backups", name)
    if backup is None:
        raise Refused(f"there is no backup `{name}` in {ctx.settings.backup.namespace}",
                      hint="`backup list` shows the backups of this environment")
    if not _includes(backup, ctx.namespace):
        held = ", ".join(_spec(backup).get("includedNamespaces") or [])
        raise Refused(f"backup {name} does not hold {ctx.namespace} "
                      f"({ctx.environment.name}); it holds {held}",
                      hint="give --env for the environment it belongs to")
    return backup


# -- backup create ------------------------------------------------------------------------


class BackupCreateParams(Params):
    target: str | None = None  # an app or the environment's namespace; default: the step's app
    ttl: str | None = None  # default: backup.default_ttl
    timeout: str = "30m"  # how long to follow the Backup before reporting a timeout

    @field_validator("target")
    @classmethod
    def _target(cls, value: str | None) -> str | None:
        if value is not None and not is_dns1123_label(value):
            raise ValueError(f"`{shown(value)}` is neither an app nor a namespace name")
        return value

    @field_validator("ttl", "timeout")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        return _check_duration(value)


async def _scope(ctx: HandlerContext, target: str | None) -> tuple[str, AppConfig | None, Obj]:
    """What a backup of `target` holds: (name part, app or None, spec scope)."""
    env = ctx.environment
    apps = ctx.settings.apps_in(env.name)
    if target is None:
        app = ctx.require_app()
    elif target in apps:
        app = apps[target]
    elif target == env.namespace:
        return target, None, {"includedNamespaces": [env.namespace]}
    else:
        others = [e.name for e in ctx.settings.environments.values()
                  if e.namespace == target and e.name != env.name]
        if others:
            raise Refused(f"{target} is the namespace of environment {others[0]}; a backup in "
                          f"{env.name} may only hold {env.namespace}",
                          hint=f"use --env {others[0]}")
        raise Refused(f"`{target}` is neither an app of {env.name} nor its namespace "
                      f"{env.namespace}",
                      hint=f"apps: {', '.join(sorted(apps)) or 'none'}; or {env.namespace}")
    # The pods of whatever the app's strategy deploys: a Deployment, StatefulSet or Rollout.
    labels = await pod_labels(ctx, app)
    if not labels:
        raise PermanentError(f"{app.name} has no matchLabels selector; "
                             f"back up the namespace {env.namespace} instead")
    return app.name, app, {"includedNamespaces": [env.namespace],
                           "labelSelector": {"matchLabels": labels}}


def _meta(ctx: HandlerContext, name: str, app: AppConfig | None) -> Obj:
    labels = {ENV_LABEL: ctx.environment.name}
    if app is not None:
        labels[APP_LABEL] = app.name
    return {"name": name, "namespace": ctx.settings.backup.namespace, "labels": labels,
            "annotations": {EXECUTION_ANNOTATION: ctx.execution_id}}


def _ttl(ctx: HandlerContext, ttl: str | None) -> str:
    text = ttl or ctx.settings.backup.default_ttl
    go = go_duration(text)
    if parse_duration(text).total_seconds() < 60:
        raise Refused(f"a backup must be kept at least 1m; --ttl `{text}` is shorter",
                      hint="write e.g. 72h or 30d")
    return go


@handler("backup.create", params=BackupCreateParams, mutating=True)
async def backup_create(*, ctx: HandlerContext, params: BackupCreateParams, **_: object
                        ) -> Result:
    """A Velero Backup of an app or the environment's namespace, followed to its end."""
    ttl = _ttl(ctx, params.ttl)
    timeout = _timeout(params.timeout)
    part, app, scope = await _scope(ctx, params.target)
    name = f"{part}-{ctx.environment.name}-{_timestamp(ctx)}"
    location = ctx.settings.backup.storage_location
    body: Obj = {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Backup", "metadata": _meta(ctx, name, app),
        "spec": {**scope, "ttl": ttl, "storageLocation": location},
    }
    what = f"app {app.name} in {ctx.namespace}" if app else f"namespace {ctx.namespace}"
    fields = (("Backup", name), ("Holds", what), ("TTL", ttl), ("Storage location", location))
    data = {"backup": name, "namespace": ctx.settings.backup.namespace,
            "app": app.name if app else None, "target": part}
    if ctx.dry_run:
        return Result(summary=f"would back up {what} as {name}", fields=fields,
                      output=_dump(body), data=data | {"phase": None})
    await ctx.kube.call(ctx.kube.custom.create_namespaced_custom_object, GROUP, VERSION,
                        ctx.settings.backup.namespace, "backups", body)
    ctx.log.info("backup: created %s/%s", ctx.settings.backup.namespace, name)
    final = await _follow(ctx, "backups", name, timeout, "itemsBackedUp", "backed up")
    return _backup_result(name, what, final, timeout, fields, data)


async def _follow(ctx: HandlerContext, plural: str, name: str, timeout: float, done_key: str,
                  verb: str) -> Obj | None:
    """Read the object until its phase is final; None when it vanished, the last state
    read (phase not final) on timeout."""
    deadline = time.monotonic() + timeout
    shown_text = ""
    obj: Obj | None = None
    while True:
        obj = await _get(ctx, plural, name)
        if obj is None:
            return None
        status = _status(obj)
        phase = status.get("phase") or "New"
        progress = status.get("progress") or {}
        text = f"{name}: {phase}"
        if progress.get("totalItems"):
            text += f", {progress.get(done_key, 0)} of {progress['totalItems']} items {verb}"
        if text != shown_text:
            shown_text = text
            await ctx.progress(text)
        if phase in DONE or time.monotonic() >= deadline:
            return obj
        await asyncio.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))


def _outcome_fields(status: Obj, done_key: str) -> list[tuple[str, str]]:
    fields = [("Phase", str(status.get("phase") or "New")), ("Items", _items(status, done_key)),
              ("Errors", str(status.get("errors", 0))),
              ("Warnings", str(status.get("warnings", 0)))]
    if status.get("failureReason"):
        fields.append(("Failure reason", str(status["failureReason"])[:500]))
    if status.get("validationErrors"):
        fields.append(("Validation errors", "; ".join(status["validationErrors"])[:500]))
    return fields


def _backup_result(name: str, what: str, final: Obj | None, timeout: float,
                   fields: tuple[tuple[str, str], ...], data: Obj) -> Result:
    if final is None:
        return Result(summary=f"backup {name} disappeared before it finished", fields=fields,
                      ok=False, data=data | {"phase": None})
    status = _status(final)
    phase = str(status.get("phase") or "New")
    all_fields = (*fields, *_outcome_fields(status, "itemsBackedUp"))
    data = data | {"phase": phase, "errors": status.get("errors", 0),
                   "warnings": status.get("warnings", 0)}
    if phase not in DONE:
        return Result(
            summary=(f"backup {name} did not finish within {rough_span(timeout)} (still {phase}, "
                     f"{_items(status)} items); it is left in place: Velero may still finish "
                     f"it, see `backup describe {name}`"),
            fields=all_fields, ok=False, data=data | {"timed_out": True})
    warnings = f", {status.get('warnings', 0)} warnings" if status.get("warnings") else ""
    match phase:
        case "Completed":
            return Result(summary=f"backed up {what} as {name}: {_items(status)} items"
                          f"{warnings}", fields=all_fields, data=data)
        case "PartiallyFailed":
            summary = (f"backup {name} partially failed: {status.get('errors', 0)} errors"
                       f"{warnings}, {_items(status)} items backed up; see `velero backup "
                       f"logs {name}`")
        case "FailedValidation":
            summary = (f"backup {name} failed validation: "
                       + "; ".join(status.get("validationErrors") or ["no details"]))
        case _:
            summary = (f"backup {name} failed: "
                       f"{status.get('failureReason') or 'no reason given'}{warnings}")
    return Result(summary=summary, fields=all_fields, ok=False, data=data)


# -- backup list / describe ---------------------------------------------------------------


class ListParams(Params):
    limit: int = Field(default=20, ge=1, le=200)


def _started(obj: Obj) -> str:
    return str(_status(obj).get("startTimestamp") or obj["metadata"].get("creationTimestamp")
               or "")


@handler("backup.list", params=ListParams)
async def backup_list(*, ctx: HandlerContext, params: ListParams, **_: object) -> Result:
    """The Velero backups holding the environment's namespace, newest first."""
    backups = [b for b in await _list(ctx, "backups") if _includes(b, ctx.namespace)]
    backups.sort(key=_started, reverse=True)
    shown_ = backups[: params.limit]
    if not shown_:
        return Result(summary=f"no backups hold {ctx.namespace} ({ctx.environment.name})",
                      data={"backups": []})
    rows = [("NAME", "PHASE", "STARTED", "COMPLETED", "EXPIRES", "ITEMS", "LOCATION",
             "ERRORS/WARNINGS")]
    for b in shown_:
        status = _status(b)
        rows.append((_name(b), str(status.get("phase") or "New"),
                     _time(status.get("startTimestamp")),
                     _time(status.get("completionTimestamp")), _time(status.get("expiration")),
                     _items(status), str(_spec(b).get("storageLocation") or "-"),
                     f"{status.get('errors', 0)}/{status.get('warnings', 0)}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    output = "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                       for r in rows)
    latest = shown_[0]
    more = f" (the newest {len(shown_)} shown)" if len(backups) > len(shown_) else ""
    return Result(
        summary=(f"{len(backups)} backups hold {ctx.namespace}{more}; latest {_name(latest)}: "
                 f"{_status(latest).get('phase') or 'New'}"),
        output=output,
        data={"backups": [_name(b) for b in shown_]},
    )


class BackupNameParams(Params):
    name: str

    @field_validator("name")
    @classmethod
    def _valid(cls, value: str) -> str:
        if not is_dns1123_subdomain(value):
            raise ValueError(f"`{shown(value)}` is not a valid Kubernetes object name")
        return value


@handler("backup.describe", params=BackupNameParams)
async def backup_describe(*, ctx: HandlerContext, params: BackupNameParams, **_: object
                          ) -> Result:
    """One backup in detail: scope, times, items, errors and warnings, and its restores."""
    backup = await _backup_of_env(ctx, params.name)
    spec, status, meta = _spec(backup), _status(backup), backup["metadata"]
    selector = (spec.get("labelSelector") or {}).get("matchLabels") or {}
    labels = meta.get("labels") or {}
    fields: list[tuple[str, str]] = [
        ("Namespaces", ", ".join(spec.get("includedNamespaces") or ["*"])),
        ("Selector", ", ".join(f"{k}={v}" for k, v in sorted(selector.items())) or "none"),
        ("Storage location", str(spec.get("storageLocation") or "-")),
        ("TTL", str(spec.get("ttl") or "-")),
        ("Started", _time(status.get("startTimestamp"))),
        ("Completed", _time(status.get("completionTimestamp"))),
        ("Expires", _time(status.get("expiration"))),
        *_outcome_fields(status, "itemsBackedUp"),
    ]
    if labels.get("velero.io/schedule-name"):
        fields.append(("Schedule", str(labels["velero.io/schedule-name"])))
    if labels.get(APP_LABEL):
        fields.append(("App", str(labels[APP_LABEL])))
    if (meta.get("annotations") or {}).get(EXECUTION_ANNOTATION):
        fields.append(("opsbot execution", str(meta["annotations"][EXECUTION_ANNOTATION])))
    restores = [r for r in await _list(ctx, "restores")
                if _spec(r).get("backupName") == params.name]
    output = None
    if restores:
        output = "\n".join(["RESTORE  PHASE  INTO  STARTED"] + [
            "  ".join((_name(r), str(_status(r).get("phase") or "New"),
                       ", ".join(f"{k}→{v}" for k, v in
                                 (_spec(r).get("namespaceMapping") or {}).items()) or "-",
                       _time(_status(r).get("startTimestamp"))))
            for r in sorted(restores, key=_started)])
    phase = status.get("phase") or "New"
    return Result(summary=f"backup {params.name}: {phase}, {_items(status)} items",
                  fields=tuple(fields), output=output,
                  data={"backup": params.name, "phase": phase,
                        "restores": [_name(r) for r in restores]})


# -- backup restore -----------------------------------------------------------------------


class BackupRestoreParams(BackupNameParams):
    into: str | None = None  # a namespace to restore into (namespaceMapping)
    existing_resource_policy: Literal["none", "update"] = "none"
    timeout: str = "30m"

    @field_validator("into")
    @classmethod
    def _into(cls, value: str | None) -> str | None:
        if value is not None and not is_dns1123_label(value):
            raise ValueError(f"`{shown(value)}` is not a valid namespace name")
        return value

    @field_validator("timeout")
    @classmethod
    def _duration(cls, value: str) -> str | None:
        return _check_duration(value)


async def _existing(ctx: HandlerContext, backup: Obj, target_ns: str) -> list[str]:
    """Objects in `target_ns` a restore of `backup` would overwrite: objects of the checked
    kinds that the backup's scope selects in the source namespace now, present by the same
    name in the target namespace (Velero keeps the contents in object storage, out of reach)."""
    spec = _spec(backup)
    included = [r.split(".")[0] for r in spec.get("includedResources") or ["*"]]
    excluded = {r.split(".")[0] for r in spec.get("excludedResources") or []}
    matched = (spec.get("labelSelector") or {}).get("matchLabels") or {}
    selector = ",".join(f"{k}={v}" for k, v in sorted(matched.items())) or None
    found: list[str] = []
    for plural, kind, api_name, lister in CHECKED_KINDS:
        if plural in excluded or ("*" not in included and plural not in included):
            continue
        fn = getattr(getattr(ctx.kube, api_name), lister)
        source = await ctx.kube.call(fn, ctx.namespace, label_selector=selector)
        names = {item.metadata.name for item in source.items}
        if kind == "Secret":  # token secrets are recreated, never restored over
            names = {n for n in names if not n.startswith("default-token-")}
        if kind == "ServiceAccount":
            names.discard("default")
        if kind == "ConfigMap":
            names.discard("kube-root-ca.crt")
        if not names:
            continue
        if target_ns == ctx.namespace:
            present = names
        else:
            there = await ctx.kube.call(fn, target_ns)
            present = names & {item.metadata.name for item in there.items}
        found.extend(f"{kind.lower()}/{n}" for n in sorted(present))
    return found


@handler("backup.restore", params=BackupRestoreParams, mutating=True)
async def backup_restore(*, ctx: HandlerContext, params: BackupRestoreParams, **_: object
                         ) -> Result:
    """A Velero Restore of a backup, into its namespace or another one, followed to its end."""
    backup = await _backup_of_env(ctx, params.name)
    phase = _status(backup).get("phase") or "New"
    if phase not in RESTORABLE:
        raise Refused(f"backup {params.name} is {phase}; only a Completed or PartiallyFailed "
                      "backup can be restored")
    timeout = _timeout(params.timeout)
    target_ns = params.into or ctx.namespace
    velero_ns = ctx.settings.backup.namespace
    if target_ns != ctx.namespace:
        owners = [e.name for e in ctx.settings.environments.values()
                  if e.namespace == target_ns]
        if owners:
            raise Refused(f"{target_ns} is the namespace of environment {owners[0]}; a "
                          f"restore from {ctx.environment.name} never goes there",
                          hint="restore into a new namespace, or into "
                          f"{ctx.namespace} without --into")
        if target_ns in (velero_ns, "kube-system", "kube-public", "default"):
            raise Refused(f"restoring into {target_ns} is not allowed",
                          hint="pick a new namespace, e.g. "
                          f"{ctx.namespace}-restore")
    overwritten = await _existing(ctx, backup, target_ns)
    update = params.existing_resource_policy == "update"
    if overwritten and not update:
        listed = ", ".join(overwritten[:10]) + (" ..." if len(overwritten) > 10 else "")
        raise Refused(f"restoring {params.name} into {target_ns} would overwrite "
                      f"{len(overwritten)} existing objects: {listed}",
                      hint="restore --into a new namespace, or give "
                      "--existing-resource-policy update to overwrite them")
    name = f"{params.name}-restore-{_timestamp(ctx)}"
    spec: Obj = {"backupName": params.name, "includedNamespaces": [ctx.namespace]}
    if target_ns != ctx.namespace:
        spec["namespaceMapping"] = {ctx.namespace: target_ns}
    if update:
        spec["existingResourcePolicy"] = "update"
    body: Obj = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Restore",
                 "metadata": _meta(ctx, name, None), "spec": spec}
    fields: tuple[tuple[str, str], ...] = (
        ("Restore", name), ("Backup", params.name),
        ("Into", target_ns if target_ns == ctx.namespace else f"{ctx.namespace} → {target_ns}"),
        ("Existing objects", (f"{len(overwritten)} updated: {', '.join(overwritten[:10])}"
                              if overwritten else "none in the way")),
    )
    data: Obj = {"restore": name, "backup": params.name, "into": target_ns,
                 "overwritten": overwritten}
    if ctx.dry_run:
        return Result(summary=f"would restore {params.name} into {target_ns} as {name}",
                      fields=fields, output=_dump(body), data=data | {"phase": None})
    await ctx.kube.call(ctx.kube.custom.create_namespaced_custom_object, GROUP, VERSION,
                        velero_ns, "restores", body)
    ctx.log.info("backup: created restore %s/%s", velero_ns, name)
    final = await _follow(ctx, "restores", name, timeout, "itemsRestored", "restored")
    if final is None:
        return Result(summary=f"restore {name} disappeared before it finished", fields=fields,
                      ok=False, data=data)
    status = _status(final)
    rphase = str(status.get("phase") or "New")
    all_fields = (*fields, *_outcome_fields(status, "itemsRestored"))
    data |= {"phase": rphase, "errors": status.get("errors", 0),
             "warnings": status.get("warnings", 0)}
    if rphase not in DONE:
        return Result(summary=(f"restore {name} did not finish within {rough_span(timeout)} (still "
                               f"{rphase}); it is left in place: Velero may still finish it"),
                      fields=all_fields, ok=False, data=data | {"timed_out": True})
    if rphase == "Completed":
        warnings = f", {status['warnings']} warnings" if status.get("warnings") else ""
        return Result(summary=(f"restored {params.name} into {target_ns}: "
                               f"{_items(status, 'itemsRestored')} items{warnings}"),
                      fields=all_fields, data=data)
    reason = (status.get("failureReason") or "; ".join(status.get("validationErrors") or [])
              or f"{status.get('errors', 0)} errors")
    return Result(summary=f"restore {name} {_phase_words(rphase)}: {reason}",
                  fields=all_fields, ok=False, data=data)


def _phase_words(phase: str) -> str:
    return {"PartiallyFailed": "partially failed", "FailedValidation": "failed validation"
            }.get(phase, "failed")


# -- schedules ----------------------------------------------------------------------------


class ScheduleParams(Params):
    cron: str
    ttl: str | None = None

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        return check_cron(value)

    @field_validator("ttl")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        return _check_duration(value)


@handler("backup.schedule", params=ScheduleParams, mutating=True)
async def backup_schedule(*, ctx: HandlerContext, params: ScheduleParams, **_: object
                          ) -> Result:
    """A Velero Schedule `<app>-<env>` backing the app up on a cron (Velero runs it)."""
    app = ctx.require_app()
    ttl = _ttl(ctx, params.ttl)
    scope = (await _scope(ctx, None))[2]
    name = f"{app.name}-{ctx.environment.name}"
    location = ctx.settings.backup.storage_location
    spec: Obj = {"schedule": params.cron,
                 "template": {**scope, "ttl": ttl, "storageLocation": location}}
    body: Obj = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Schedule",
                 "metadata": _meta(ctx, name, app), "spec": {**spec, "paused": False}}
    existing = await _get(ctx, "schedules", name)
    before = str(_spec(existing).get("schedule")) if existing else None
    fields = (("Schedule", name), ("Cron", params.cron if before in (None, params.cron)
                                   else f"{before} → {params.cron}"),
              ("TTL", ttl), ("Storage location", location))
    data = {"schedule": name, "cron": params.cron}
    verb = "update" if existing else "create"
    if ctx.dry_run:
        return Result(summary=f"would {verb} schedule {name}: '{params.cron}'", fields=fields,
                      output=_dump(body), data=data)
    if existing is None:
        await ctx.kube.call(ctx.kube.custom.create_namespaced_custom_object, GROUP, VERSION,
                            ctx.settings.backup.namespace, "schedules", body)
    else:
        await ctx.kube.call(ctx.kube.custom.patch_namespaced_custom_object, GROUP, VERSION,
                            ctx.settings.backup.namespace, "schedules", name, {"spec": spec})
    await asyncio.sleep(min(POLL_SECONDS, 1.0))  # Velero validates a Schedule at once
    now = await _get(ctx, "schedules", name) or body
    status = _status(now)
    if status.get("phase") == "FailedValidation":
        return Result(summary=f"schedule {name} failed validation: "
                      + "; ".join(status.get("validationErrors") or ["no details"]),
                      fields=fields, ok=False, data=data)
    paused = " (it is paused: `backup unpause` to run it)" if _spec(now).get("paused") else ""
    return Result(summary=f"{verb}d schedule {name}: '{params.cron}'{paused}", fields=fields,
                  data=data)


@handler("backup.schedules", params=ListParams)
async def backup_schedules(*, ctx: HandlerContext, params: ListParams, **_: object) -> Result:
    """The Velero schedules whose backups hold the environment's namespace."""
    schedules = [s for s in await _list(ctx, "schedules")
                 if _includes({"spec": _spec(s).get("template") or {}}, ctx.namespace)]
    schedules.sort(key=_name)
    if not schedules:
        return Result(summary=f"no schedules back up {ctx.namespace} ({ctx.environment.name})",
                      data={"schedules": []})
    rows = [("NAME", "CRON", "STATE", "LAST BACKUP", "TTL")]
    for s in schedules[: params.limit]:
        spec, status = _spec(s), _status(s)
        state = "paused" if spec.get("paused") else str(status.get("phase") or "New")
        rows.append((_name(s), str(spec.get("schedule") or "-"), state,
                     _time(status.get("lastBackup")),
                     str((spec.get("template") or {}).get("ttl") or "-")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    output = "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                       for r in rows)
    paused = sum(1 for s in schedules if _spec(s).get("paused"))
    return Result(summary=f"{len(schedules)} schedules back up {ctx.namespace}, {paused} paused",
                  output=output, data={"schedules": [_name(s) for s in schedules]})


async def _set_paused(ctx: HandlerContext, name: str, paused: bool) -> Result:
    schedule = await _get(ctx, "schedules", name)
    if schedule is None:
        raise Refused(f"there is no schedule `{name}` in {ctx.settings.backup.namespace}",
                      hint="`backup schedules` lists them")
    if not _includes({"spec": _spec(schedule).get("template") or {}}, ctx.namespace):
        raise Refused(f"schedule {name} does not back up {ctx.namespace} "
                      f"({ctx.environment.name})", hint="give --env for its environment")
    word = "paused" if paused else "unpaused"
    if bool(_spec(schedule).get("paused")) == paused:
        return Result(summary=f"schedule {name} is already {word}; nothing to change",
                      data={"schedule": name, "paused": paused})
    if ctx.dry_run:
        return Result(summary=f"would {word[:-1]} schedule {name}",
                      data={"schedule": name, "paused": paused})
    await ctx.kube.call(ctx.kube.custom.patch_namespaced_custom_object, GROUP, VERSION,
                        ctx.settings.backup.namespace, "schedules", name,
                        {"spec": {"paused": paused}})
    ctx.log.info("backup: schedule %s %s", name, word)
    return Result(summary=f"{word} schedule {name}", data={"schedule": name, "paused": paused})


@handler("backup.pause", params=BackupNameParams, mutating=True)
async def backup_pause(*, ctx: HandlerContext, params: BackupNameParams, **_: object) -> Result:
    """Pause a Velero schedule (spec.paused): no backups until unpaused."""
    return await _set_paused(ctx, params.name, True)


@handler("backup.unpause", params=BackupNameParams, mutating=True)
async def backup_unpause(*, ctx: HandlerContext, params: BackupNameParams, **_: object
                         ) -> Result:
    """Unpause a Velero schedule."""
    return await _set_paused(ctx, params.name, False)



# -- backup verify ------------------------------------------------------------------------

#: Kinds Velero backs up but does not restore as themselves (controllers recreate them).
_NOT_RESTORED = {"v1/Pod", "apps/v1/ReplicaSet", "v1/Endpoints", "v1/Event",
                 "discovery.k8s.io/v1/EndpointSlice", "events.k8s.io/v1/Event"}
_KIND_KEYS = {
    "Deployment": "apps/v1/Deployment", "StatefulSet": "apps/v1/StatefulSet",
    "Service": "v1/Service", "ConfigMap": "v1/ConfigMap", "Secret": "v1/Secret",
    "PersistentVolumeClaim": "v1/PersistentVolumeClaim", "ServiceAccount": "v1/ServiceAccount",
}


class BackupVerifyParams(BackupNameParams):
    timeout: str = Field(default="30m", description="How long the test restore may take.")


async def resource_list(ctx: HandlerContext, backup: str) -> dict[str, list[str]]:
    """What the backup holds, as `velero backup describe --details` reads it: a DownloadRequest
    for its BackupResourceList, then the gzipped JSON at the signed URL Velero hands out
    (`{"apps/v1/Deployment": ["shop-staging/shop-api", ...], ...}`)."""
    velero_ns = ctx.settings.backup.namespace
    name = f"{backup[:200]}-{_now().strftime('%Y%m%d%H%M%S%f')}"
    body: Obj = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DownloadRequest",
                 "metadata": {"name": name},
                 "spec": {"target": {"kind": "BackupResourceList", "name": backup}}}
    await ctx.kube.call(ctx.kube.custom.create_namespaced_custom_object, GROUP, VERSION,
                        velero_ns, "downloadrequests", body)
    try:
        deadline = time.monotonic() + 60
        while True:
            request = await _get(ctx, "downloadrequests", name)
            status = _status(request or {})
            if status.get("phase") == "Processed" and status.get("downloadURL"):
                url = str(status["downloadURL"])
                break
            if time.monotonic() >= deadline:
                raise RetryableError(f"Velero did not answer the download request for {backup}")
            await asyncio.sleep(min(POLL_SECONDS, 0.5))
    finally:
        with contextlib.suppress(NotFound):
            await ctx.kube.call(ctx.kube.custom.delete_namespaced_custom_object, GROUP,
                                VERSION, velero_ns, "downloadrequests", name)
    if not url.startswith(("http://", "https://")):
        raise PermanentError(f"Velero gave a download URL opsbot will not follow for {backup}")
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            response = await http.get(url)
        response.raise_for_status()
        listed = json.loads(gzip.decompress(response.content))
    except (httpx.HTTPError, OSError, ValueError) as exc:
        raise RetryableError(f"the resource list of {backup} could not be read "
                             f"({type(exc).__name__})") from exc
    if not isinstance(listed, dict):
        raise PermanentError(f"the resource list of {backup} is not what Velero writes")
    return {str(k): [str(i) for i in v] for k, v in listed.items() if isinstance(v, list)}


async def _restored(ctx: HandlerContext, namespace: str, restore: str) -> dict[str, set[str]]:
    """Objects a restore created in `namespace`, by kind key (Velero labels each one)."""
    selector = f"velero.io/restore-name={restore}"
    found: dict[str, set[str]] = {}
    for _, kind, api_name, lister in CHECKED_KINDS:
        fn = getattr(getattr(ctx.kube, api_name), lister)
        listed = await ctx.kube.call(fn, namespace, label_selector=selector)
        found[_KIND_KEYS[kind]] = {item.metadata.name for item in listed.items}
    return found


def compare(expected: dict[str, list[str]], restored: dict[str, set[str]],
            source_ns: str) -> tuple[list[tuple[str, str]], list[str]]:
    """Per kind, `held → restored` counts; and the problems (objects held, not restored)."""
    rows: list[tuple[str, str]] = []
    problems: list[str] = []
    for key in sorted(expected):
        names = {i.split("/", 1)[1] for i in expected[key] if i.startswith(f"{source_ns}/")}
        if not names or key in _NOT_RESTORED:
            continue
        kind = key.rsplit("/", 1)[-1]
        if key not in restored:
            rows.append((kind, f"{len(names)} held; not checked"))
            continue
        got = restored[key] & names
        missing = sorted(names - got)
        rows.append((kind, f"{len(names)} held, {len(got)} restored"))
        if missing:
            problems.append(f"{kind} not restored: {', '.join(missing[:10])}")
    return rows, problems


@handler("backup.verify", params=BackupVerifyParams, mutating=True)
async def backup_verify(*, ctx: HandlerContext, params: BackupVerifyParams, **_: object
                        ) -> Result:
    """Restore a backup into a scratch namespace, compare what came back with what the backup
    holds (kinds and counts), report, and delete the scratch namespace whatever happened."""
    backup = await _backup_of_env(ctx, params.name)
    phase = _status(backup).get("phase") or "New"
    if phase not in RESTORABLE:
        raise Refused(f"backup {params.name} is {phase}; only a Completed or PartiallyFailed "
                      "backup can be verified")
    return await _verify(ctx, params.name, _timeout(params.timeout))


class VerifyLatestParams(Params):
    timeout: str = Field(default="30m", description="How long the test restore may take.")


@handler("backup.verify_latest", params=VerifyLatestParams, mutating=True)
async def backup_verify_latest(*, ctx: HandlerContext, params: VerifyLatestParams,
                               **_: object) -> Result:
    """Verify the newest finished backup opsbot made of the app in this environment (the
    scheduled verification runs this for every configured app)."""
    app = ctx.require_app()
    finished = [
        b for b in await _list(ctx, "backups")
        if (b["metadata"].get("labels") or {}).get("opsbot.io/app") == app.name
        and (b["metadata"].get("labels") or {}).get("opsbot.io/environment") == ctx.environment.name
        and _status(b).get("phase") in RESTORABLE and _includes(b, ctx.namespace)
    ]
    if not finished:
        return Result(summary=f"no finished backup of {app.name} in {ctx.environment.name} to "
                      "verify", data={"skipped": True})
    latest = max(finished, key=lambda b: (_status(b).get("completionTimestamp") or "", _name(b)))
    return await _verify(ctx, _name(latest), _timeout(params.timeout))


async def _verify(ctx: HandlerContext, backup_name: str, timeout: float) -> Result:
    """The test restore of `backup_name` into a scratch namespace, compared and cleaned up."""
    params = BackupNameParams(name=backup_name)
    stamp = _timestamp(ctx)
    scratch = f"opsbot-verify-{_now().strftime('%m%d%H%M%S')}" if not ctx.dry_run \
        else "opsbot-verify-<mmddhhmmss>"
    restore = f"{params.name[:200]}-verify-{stamp}"
    body: Obj = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Restore",
                 "metadata": _meta(ctx, restore, None),
                 "spec": {"backupName": params.name, "includedNamespaces": [ctx.namespace],
                          "namespaceMapping": {ctx.namespace: scratch}}}
    fields: list[tuple[str, str]] = [("Backup", params.name), ("Scratch namespace", scratch),
                                     ("Restore", restore)]
    if ctx.dry_run:
        return Result(summary=f"would restore {params.name} into {scratch}, compare it with "
                      "the backup, then delete the namespace", fields=tuple(fields),
                      output=_dump(body))
    expected = await resource_list(ctx, params.name)
    velero_ns = ctx.settings.backup.namespace
    data: Obj = {"backup": params.name, "scratch": scratch, "restore": restore}
    try:
        await ctx.kube.call(ctx.kube.custom.create_namespaced_custom_object, GROUP, VERSION,
                            velero_ns, "restores", body)
        final = await _follow(ctx, "restores", restore, timeout, "itemsRestored", "restored")
        status = _status(final or {})
        rphase = str(status.get("phase") or "gone")
        fields += _outcome_fields(status, "itemsRestored")
        rows, problems = compare(expected, await _restored(ctx, scratch, restore),
                                 ctx.namespace)
        fields += rows
        if rphase not in DONE:
            problems.insert(0, f"the test restore did not finish within {rough_span(timeout)} "
                               f"(still {rphase})")
        elif rphase not in ("Completed", "PartiallyFailed"):
            problems.insert(0, f"the test restore {_phase_words(rphase)}: "
                               f"{status.get('failureReason') or status.get('errors', 0)}")
    finally:
        cleaned = await _delete_namespace(ctx, scratch)
    fields.append(("Cleanup", cleaned))
    data |= {"ok": not problems, "problems": problems}
    if problems:
        return Result(summary=f"backup {params.name} did NOT verify: {problems[0]}",
                      fields=tuple(fields), output="\n".join(problems), ok=False, data=data)
    held = sum(len(v) for k, v in expected.items() if k not in _NOT_RESTORED)
    return Result(summary=f"backup {params.name} verified: a test restore brought back what "
                  f"it holds ({held} objects); {scratch} deleted",
                  fields=tuple(fields), data=data)


async def _delete_namespace(ctx: HandlerContext, namespace: str) -> str:
    """Delete the scratch namespace and wait (bounded) until it is gone; says how it went."""
    try:
        await ctx.kube.call(ctx.kube.core.delete_namespace, namespace)
    except NotFound:
        return f"{namespace} was not created"
    except (PermanentError, RetryableError) as exc:
        ctx.log.error("backup verify: scratch namespace %s not deleted: %s", namespace, exc)
        return f"could not delete {namespace}: {exc}; delete it by hand"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            await ctx.kube.call(ctx.kube.core.read_namespace, namespace)
        except NotFound:
            return f"{namespace} deleted"
        await asyncio.sleep(0.5)
    return f"{namespace} is being deleted"
