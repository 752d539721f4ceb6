"""`backup schedule`, `backup schedules`, `backup pause` and `backup unpause`: the Velero Schedule
that backs an app up on a cron, its cron expression checked before Velero sees it."""

from __future__ import annotations

import asyncio

from pydantic import field_validator

from bot.errors import Refused
from bot.markup import code
from bot.names import shown
from bot.numbers import is_digits
from bot.registry import HandlerContext, Params, Result, handler
from handlers.backup import common
from handlers.backup.common import (
    GROUP,
    VERSION,
    BackupNameParams,
    ListParams,
    Obj,
    _check_duration,
    _dump,
    _get,
    _includes,
    _list,
    _meta,
    _name,
    _scope,
    _spec,
    _status,
    _time,
    _ttl,
)

__all__ = [
    "ScheduleParams",
    "backup_pause",
    "backup_schedule",
    "backup_schedules",
    "backup_unpause",
    "check_cron",
]

_CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
                ("day of week", 0, 7))
_NAMES = {3: ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
          4: ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]}


def check_cron(text: str) -> str:
    """A standard 5-field cron expression (as Velero's Schedule takes it), or ValueError."""
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(f"{code(shown(text))} has {len(fields)} fields; a cron expression has 5 "
                         "(minute hour day-of-month month day-of-week), e.g. \"0 3 * * *\"")
    for index, (field_text, (what, low, high)) in enumerate(zip(fields, _CRON_FIELDS,
                                                                 strict=True)):
        for part in field_text.split(","):
            base, slash, step = part.partition("/")
            if slash and not (is_digits(step) and int(step) >= 1):
                raise ValueError(f"{what}: {code(shown(part))} has a bad step")
            if base == "*":
                continue
            for bound in base.split("-", 1):
                value = _cron_value(bound, index)
                if value is None or not low <= value <= high:
                    raise ValueError(f"{what}: {code(shown(bound))} is not a value from {low} "
                                     f"to {high}")
    return " ".join(fields)


def _cron_value(text: str, index: int) -> int | None:
    if is_digits(text):  # 0-9 only: Velero's cron parser reads no other digits
        return int(text)
    names = _NAMES.get(index, [])
    if text.lower() in names:
        return names.index(text.lower()) + (1 if index == 3 else 0)
    return None


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
    await asyncio.sleep(min(common.POLL_SECONDS, 1.0))  # Velero validates a Schedule at once
    now = await _get(ctx, "schedules", name) or body
    status = _status(now)
    if status.get("phase") == "FailedValidation":
        return Result(summary=f"schedule {name} failed validation: "
                      + "; ".join(status.get("validationErrors") or ["no details"]),
                      fields=fields, ok=False, data=data)
    paused = (f" (it is paused: {code('backup unpause')} to run it)"
              if _spec(now).get("paused") else "")
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
        raise Refused(f"there is no schedule {code(name)} in {ctx.settings.backup.namespace}",
                      hint=f"{code('backup schedules')} lists them")
    if not _includes({"spec": _spec(schedule).get("template") or {}}, ctx.namespace):
        raise Refused(f"schedule {name} does not back up {ctx.namespace} "
                      f"({ctx.environment.name})", hint="give --env for its environment")
    word = "paused" if paused else "unpaused"
    if bool(_spec(schedule).get("paused")) == paused:
        raise Refused(f"schedule {name} is already {word}; nothing to change")
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
