"""The `argocd` strategy: deploys sync the app's Argo CD Application to a git revision and
rollbacks use Argo CD's own history, so Argo CD stays the one writer of the workload.

Conventions (docs/deploy-strategies.md, "Argo CD"):
- The Application is `deploy.argocd_app` with `{app}` and `{env}` filled in.
- The "tag" of `deploy <app> <tag>` is a git revision of the Application's source (a tag,
  branch or commit; for a chart from a Helm repository, the chart version). A full image
  reference contributes only its tag. Argo CD syncs that revision once, without changing
  `spec.source.targetRevision`.
- `rollback --to N` takes an Argo CD history id (`argocd app history`), default the entry
  before the current one (`history <app>` lists the ids). Argo CD refuses rollbacks while
  auto-sync is on; opsbot refuses first unless asked to turn auto-sync off (and then leaves it
  off: turning it back on is a deliberate act, since Argo CD would then sync straight back to
  git).
- The revision a deploy or rollback reports (and the audit log keeps) is `history_key`: the
  Application, the history id and its deployedAt, never the bare id, which a Deployment's
  ReplicaSet revision or a re-created Application's ids could equal.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from bot.argocd import Application, ArgoCDClient, HistoryEntry
from bot.errors import ConfigError, PermanentError, Refused
from bot.markup import code
from bot.registry import HandlerContext
from handlers.deploy.plan import Change, Plan
from handlers.deploy.strategy import Progress

__all__ = ["STRATEGY", "ArgoCDStrategy", "app_name", "history_key", "read_app", "revision_from"]

# A git ref or commit, or a chart version: no spaces, no "..", nothing that shapes a URL.
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/+-]{0,127}\Z")
AUTO_SYNC_FLAG = "--disable-autosync"


def app_name(ctx: HandlerContext) -> str:
    """The Argo CD Application of the app in this environment."""
    app = ctx.require_app()
    try:
        return app.deploy.argocd_app.format(app=app.name, env=ctx.environment.name)
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(
            f"deploy.argocd_app {code(app.deploy.argocd_app)} of {app.name} may use only "
            "{app} and {env}"
        ) from exc


def revision_from(image: str) -> str:
    """The git revision a deploy asks for: a bare tag as is, or the tag of an image reference."""
    value = image.strip()
    if "@" in value:
        raise PermanentError(
            f"{code(value)} names an image digest; an Argo CD app is deployed by git revision "
            "(a tag, branch or commit)"
        )
    last = value.rsplit("/", 1)[-1]
    if ":" in last:
        value = last.rsplit(":", 1)[1]
    elif "." in value.split("/", 1)[0] and "/" in value:  # registry.example.com/shop/api
        raise PermanentError(f"{code(value)} is an image without a tag; give the tag to sync to")
    if not _REVISION.match(value) or ".." in value:
        raise PermanentError(f"{code(value)} is not a git revision Argo CD can sync to")
    return value


def _client(ctx: HandlerContext) -> ArgoCDClient:
    settings = ctx.settings
    if not settings.argocd_url or settings.argocd_token is None:
        raise ConfigError("Argo CD is not configured: set ARGOCD_URL and ARGOCD_TOKEN")
    return ArgoCDClient(settings.argocd_url, settings.argocd_token.get_secret_value())


async def read_app(ctx: HandlerContext) -> Application:
    """The app's Argo CD Application as Argo CD has it now."""
    async with _client(ctx) as argocd:
        return await argocd.get_app(app_name(ctx))


def history_key(application: str, entry: HistoryEntry) -> str:
    """How the audit log names one Argo CD deployment, so `history` credits exactly it: ids
    start again at 0 when an Application is re-created, and deployedAt tells those apart."""
    return f"argocd:{application}:{entry.id}:{entry.deployed_at}"


def _shown(entry: HistoryEntry | None) -> str:
    return f"{entry.revision} (#{entry.id})" if entry else "nothing deployed"


def _auto_sync_refusal(name: str, app: str, env: str) -> Refused:
    return Refused(
        f"rollback cannot be initiated when auto-sync is enabled: Argo CD app {code(name)} syncs "
        "itself from git and would undo a rollback. Run "
        f"{code(f'rollback {app} --env {env} {AUTO_SYNC_FLAG}')} to turn auto-sync off and roll "
        "back (it stays off until re-enabled in Argo CD), or revert the change in git.",
        hint=f"add {code(AUTO_SYNC_FLAG)}, or revert the change in git",
    )


class ArgoCDStrategy:
    """Plans, applies, follows and reverts deploys through the Argo CD API."""

    name = "argocd"

    async def plan_deploy(self, ctx: HandlerContext, image: str) -> Plan:
        name, revision = app_name(ctx), revision_from(image)
        async with _client(ctx) as argocd:
            app = await argocd.get_app(name)
        current = app.current
        if app.auto_sync and revision not in (app.target_revision, "HEAD"):
            raise Refused(
                f"Argo CD app {code(name)} syncs itself from {code(app.target_revision)} "
                f"(auto-sync is on), so it would refuse a sync to {code(revision)}. Deploy by "
                "changing git, or turn auto-sync off in Argo CD first.",
                hint="with auto-sync on, git decides what runs",
            )
        if (current is not None and current.revision == revision
                and app.sync_status == "Synced" and app.health_status == "Healthy"):
            raise Refused(
                f"Argo CD app {code(name)} already runs {revision} (Synced, Healthy); "
                "nothing to deploy"
            )
        return self._plan(
            ctx,
            app,
            "deploy",
            changes=(Change("sync revision", current.revision if current else "none", revision),),
            details={"revision": revision},
        )

    async def plan_rollback(
        self, ctx: HandlerContext, to: int | None, *, disable_auto_sync: bool = False
    ) -> Plan:
        name = app_name(ctx)
        async with _client(ctx) as argocd:
            app = await argocd.get_app(name)
        history, current = app.history, app.current
        if to is None:
            if len(history) < 2:
                raise Refused(f"Argo CD has no earlier deployment of {code(name)} to roll back to")
            entry = history[-2]
        else:
            found = app.history_entry(to)
            if found is None:
                ids = ", ".join(str(h.id) for h in history) or "none"
                raise PermanentError(
                    f"Argo CD app {code(name)} has no deployment #{to} in its history (ids: {ids})"
                )
            entry = found
        if current is not None and entry.id == current.id:
            raise Refused(
                f"Argo CD app {code(name)} already runs {_shown(entry)}; nothing to roll back"
            )
        changes = [Change("sync revision", _shown(current), _shown(entry))]
        if app.auto_sync:
            if not disable_auto_sync:
                raise _auto_sync_refusal(name, ctx.require_app().name, ctx.environment.name)
            changes.append(Change("auto-sync", "on", "off"))
        return self._plan(
            ctx,
            app,
            "rollback",
            changes=tuple(changes),
            details={
                "revision": entry.revision,
                "rollback_id": entry.id,
                "disable_auto_sync": bool(disable_auto_sync and app.auto_sync),
            },
            target_revision=str(entry.id),
        )

    def _plan(
        self,
        ctx: HandlerContext,
        app: Application,
        action: Literal["deploy", "rollback"],
        *,
        changes: tuple[Change, ...],
        details: dict[str, Any],
        target_revision: str | None = None,
    ) -> Plan:
        current = app.current
        return Plan(
            action=action,
            strategy="argocd",
            app=ctx.require_app().name,
            environment=ctx.environment.name,
            # The Application object's own namespace, as `Target` names it: argocd/<app>-<env>.
            namespace=app.namespace,
            kind="Application",
            target=app.name,
            current_revision=str(current.id) if current else None,
            changes=changes,
            target_revision=target_revision,
            details={
                "argocd_app": app.name,
                "history_id": current.id if current else None,
                "previous_revision": current.revision if current else None,
                "auto_sync": app.auto_sync,
                "automated": app.automated,
                "tracks": app.target_revision,
                **details,
            },
        )

    async def apply(self, ctx: HandlerContext, plan: Plan) -> str:
        if ctx.dry_run:
            raise PermanentError("apply must not run in a dry run")
        name, revision = plan.target, str(plan.details["revision"])
        async with _client(ctx) as argocd:
            app = await argocd.get_app(name)
            self._check_unchanged(app, plan)
            if plan.action == "deploy":
                await argocd.sync(name, revision)
                ctx.log.info("argocd: sync of %s to %s requested", name, revision)
                return f"Argo CD is syncing {name} to {revision}"
            rollback_id = int(plan.details["rollback_id"])
            note = ""
            if plan.details.get("disable_auto_sync") and app.auto_sync:
                await argocd.set_auto_sync(name, False)
                ctx.log.warning("argocd: auto-sync of %s turned off for a rollback", name)
                note = (
                    "; auto-sync is now OFF and stays off until someone re-enables it in "
                    "Argo CD (it would sync straight back to git)"
                )
            await argocd.rollback(name, rollback_id)
        ctx.log.info("argocd: rollback of %s to #%d requested", name, rollback_id)
        return f"Argo CD is rolling {name} back to {revision} (#{rollback_id}){note}"

    def _check_unchanged(self, app: Application, plan: Plan) -> None:
        current = app.current
        if (current.id if current else None) != plan.details.get("history_id"):
            raise PermanentError(
                f"Argo CD app {code(app.name)} was deployed by someone else since this plan was "
                f"made (now {_shown(current)}); plan again"
            )
        if app.operation_running:
            raise PermanentError(
                f"Argo CD app {code(app.name)} is busy: another operation is already in progress"
            )

    async def progress(self, ctx: HandlerContext, plan: Plan) -> Progress:
        """Where the app's latest operation stands: a deploy, or the revert of one."""
        async with _client(ctx) as argocd:
            app = await argocd.get_app(plan.target)
        return _progress(app, plan.details.get("history_id"))

    async def revert(self, ctx: HandlerContext, plan: Plan, reason: str) -> str:
        """Start going back to the deployment that was current before `plan`: an Argo CD
        rollback, or (auto-sync on) a sync to its revision, which Argo CD allows only when
        git tracks that revision. `progress` follows it."""
        before_id = plan.details.get("history_id")
        before = plan.details.get("previous_revision")
        if before_id is None or before is None:
            raise PermanentError(f"nothing to revert {plan.target} to: it had no deployment")
        name = plan.target
        async with _client(ctx) as argocd:
            app = await argocd.get_app(name)
            if app.auto_sync:
                await argocd.sync(name, str(before))
                how = f"syncing {name} back to {before} (auto-sync is on: no Argo CD rollback)"
            else:
                await argocd.rollback(name, int(before_id))
                how = f"rolling {name} back to {before} (#{before_id})"
        ctx.log.warning("argocd: %s after: %s", how, reason)
        return f"Argo CD is {how}"


def _progress(app: Application, since: int | None) -> Progress:
    """Done when the latest operation succeeded, left a deployment newer than `since` and the
    app is Healthy; failed when the operation failed or the app turned Degraded."""
    name, health = app.name, app.health_status
    if app.operation_pending:
        return Progress(False, False, f"{name}: waiting for Argo CD to start the operation")
    if app.operation_failed:
        return Progress(False, True, f"{name}: sync {app.operation_phase}: {app.operation_message}")
    current = app.current
    if app.operation_running or current is None or (since is not None and current.id <= since):
        phase = app.operation_phase or "waiting"
        return Progress(False, False, f"{name}: sync {phase}, health {health}")
    revision, key = current.revision, history_key(name, current)
    if health == "Degraded":
        detail = f": {app.health_message}" if app.health_message else ""
        return Progress(False, True, f"{name} is Degraded on {revision}{detail}", key)
    if health != "Healthy":
        return Progress(False, False, f"{name}: synced to {revision}, health {health}", key)
    if app.sync_status == "Synced":
        return Progress(True, False, f"{name} runs {revision}: Synced, Healthy", key)
    return Progress(
        True,
        False,
        f"{name} runs {revision}: Healthy, {app.sync_status} (the app tracks "
        f"{code(app.target_revision)} in git)",
        key,
    )


STRATEGY = ArgoCDStrategy()
