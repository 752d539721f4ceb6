"""`backup create`, `backup list` and `backup describe`: make a Velero Backup of an app or the
environment's namespace and follow it to its end; show the backups that hold the namespace."""

from __future__ import annotations

from pydantic import field_validator

from bot.markup import code
from bot.messages import rough_span
from bot.names import is_dns1123_label, shown
from bot.registry import HandlerContext, Params, Result, handler
from handlers.backup.common import (
    APP_LABEL,
    DONE,
    EXECUTION_ANNOTATION,
    GROUP,
    VERSION,
    BackupNameParams,
    ListParams,
    Obj,
    _backup_of_env,
    _check_duration,
    _dump,
    _follow,
    _includes,
    _items,
    _list,
    _meta,
    _name,
    _outcome_fields,
    _scope,
    _spec,
    _status,
    _time,
    _timeout,
    _timestamp,
    _ttl,
)

__all__ = ["BackupCreateParams", "backup_create", "backup_describe", "backup_list"]

# -- backup create ------------------------------------------------------------------------


class BackupCreateParams(Params):
    target: str | None = None  # an app or the environment's namespace; default: the step's app
    ttl: str | None = None  # default: backup.default_ttl
    timeout: str = "30m"  # how long to follow the Backup before reporting a timeout

    @field_validator("target")
    @classmethod
    def _target(cls, value: str | None) -> str | None:
        if value is not None and not is_dns1123_label(value):
            raise ValueError(f"{code(shown(value))} is neither an app nor a namespace name")
        return value

    @field_validator("ttl", "timeout")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        return _check_duration(value)


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
                     f"it, see {code(f'backup describe {name}')}"),
            fields=all_fields, ok=False, data=data | {"timed_out": True})
    warnings = f", {status.get('warnings', 0)} warnings" if status.get("warnings") else ""
    match phase:
        case "Completed":
            return Result(summary=f"backed up {what} as {name}: {_items(status)} items"
                          f"{warnings}", fields=all_fields, data=data)
        case "PartiallyFailed":
            summary = (f"backup {name} partially failed: {status.get('errors', 0)} errors"
                       f"{warnings}, {_items(status)} items backed up; see "
                       f"{code(f'velero backup logs {name}')}")
        case "FailedValidation":
            summary = (f"backup {name} failed validation: "
                       + "; ".join(status.get("validationErrors") or ["no details"]))
        case _:
            summary = (f"backup {name} failed: "
                       f"{status.get('failureReason') or 'no reason given'}{warnings}")
    return Result(summary=summary, fields=all_fields, ok=False, data=data)


# -- backup list / describe ---------------------------------------------------------------


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
