"""`backup restore`: a Velero Restore of a backup into its namespace or a new one, refused when it
would overwrite live objects unasked, followed to its end."""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from bot.errors import Refused
from bot.markup import code
from bot.messages import rough_span
from bot.names import is_dns1123_label, shown
from bot.registry import HandlerContext, Result, handler
from handlers.backup.common import (
    CHECKED_KINDS,
    DONE,
    GROUP,
    RESTORABLE,
    VERSION,
    BackupNameParams,
    Obj,
    _backup_of_env,
    _check_duration,
    _dump,
    _follow,
    _items,
    _meta,
    _outcome_fields,
    _phase_words,
    _spec,
    _status,
    _timeout,
    _timestamp,
)

__all__ = ["BackupRestoreParams", "backup_restore"]


class BackupRestoreParams(BackupNameParams):
    into: str | None = None  # a namespace to restore into (namespaceMapping)
    existing_resource_policy: Literal["none", "update"] = "none"
    timeout: str = "30m"

    @field_validator("into")
    @classmethod
    def _into(cls, value: str | None) -> str | None:
        if value is not None and not is_dns1123_label(value):
            raise ValueError(f"{code(shown(value))} is not a valid namespace name")
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
