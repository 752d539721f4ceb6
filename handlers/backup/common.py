"""What every `backup ...` handler shares: Velero's API coordinates and opsbot's labels, reading
Velero objects, the scope of an app's backup, and following a Backup or Restore to its end."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml
from pydantic import Field, field_validator

from bot import messages
from bot.config import BACKUP_TTL_SHORTEST, AppConfig
from bot.errors import NotFound, PermanentError, Refused, UsageError
from bot.markup import code
from bot.names import is_dns1123_subdomain, shown
from bot.numbers import parse_duration
from bot.registry import HandlerContext, Params
from handlers.deploy.strategy import pod_labels

GROUP, VERSION = "velero.io", "v1"
APP_LABEL, ENV_LABEL = "opsbot.io/app", "opsbot.io/environment"
EXECUTION_ANNOTATION = "opsbot.io/execution-id"
DONE = ("Completed", "PartiallyFailed", "Failed", "FailedValidation")
RESTORABLE = ("Completed", "PartiallyFailed")
# How often a running Backup or Restore is read again. Tests lower it: read it as
# `common.POLL_SECONDS` at call time, never import the value.
POLL_SECONDS = 2.0
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
TIMEOUT_SHORTEST, TIMEOUT_LONGEST = timedelta(seconds=1), timedelta(hours=24)
Obj = dict[str, Any]


def go_duration(text: str) -> str:
    """`1d12h` (opsbot's duration) as the Go duration Velero's `ttl` takes: `36h0m0s`."""
    seconds = int(parse_duration(text).total_seconds())
    return f"{seconds // 3600}h{seconds % 3600 // 60}m{seconds % 60}s"


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
    # As the backup runbooks bound --timeout; this holds for other runbooks calling these.
    return parse_duration(text, shortest=TIMEOUT_SHORTEST, longest=TIMEOUT_LONGEST,
                          what="a timeout").total_seconds()


# -- params more than one command takes ---------------------------------------------------


class ListParams(Params):
    limit: int = Field(default=20, ge=1, le=200)


class BackupNameParams(Params):
    name: str

    @field_validator("name")
    @classmethod
    def _valid(cls, value: str) -> str:
        if not is_dns1123_subdomain(value):
            raise ValueError(f"{code(shown(value))} is not a valid Kubernetes object name")
        return value


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
        raise Refused(f"there is no backup {code(name)} in {ctx.settings.backup.namespace}",
                      hint=f"{code('backup list')} shows the backups of this environment")
    if not _includes(backup, ctx.namespace):
        held = ", ".join(_spec(backup).get("includedNamespaces") or [])
        raise Refused(f"backup {name} does not hold {ctx.namespace} "
                      f"({ctx.environment.name}); it holds {held}",
                      hint="give --env for the environment it belongs to")
    return backup


# -- what a backup holds and how opsbot marks it ------------------------------------------


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
        if target in ctx.settings.apps:  # an app deployed elsewhere: say where
            elsewhere = [e for e in ctx.settings.environments
                         if target in ctx.settings.apps_in(e)]
            raise Refused(messages.app_not_in_environment(target, env.name, elsewhere),
                          hint=messages.app_not_in_environment_hint(elsewhere))
        raise Refused(f"{code(target)} is neither an app of {env.name} nor its namespace "
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
    parse_duration(text, shortest=BACKUP_TTL_SHORTEST, what="a backup's TTL")
    return go_duration(text)


# -- following a Backup or Restore --------------------------------------------------------


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


def _phase_words(phase: str) -> str:
    return {"PartiallyFailed": "partially failed", "FailedValidation": "failed validation"
            }.get(phase, "failed")
