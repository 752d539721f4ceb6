"""The `argocd` strategy against the Argo CD stand-in: plans (revision and history-id
conventions, auto-sync refusals), apply, progress to Healthy or Degraded, and revert."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.config import load_settings
from bot.errors import ConfigError, PermanentError, Refused
from bot.markup import plain
from bot.registry import HandlerContext, Registry
from bot.services import Services
from bot.trigger import Trigger
from handlers.deploy.argocd import STRATEGY, revision_from
from handlers.deploy.plan import Plan
from handlers.deploy.strategy import Progress
from tests.conftest import DEMO_CONFIG, RecordingReporter
from tests.support.argocd_standin import TOKEN, ArgoCDStandIn

APP = "shop-api-staging"


def handler_context(services: Services, app: str, env: str = "staging", *,
                    dry_run: bool = False) -> HandlerContext:
    """A HandlerContext as the dispatcher builds one for a step of `app` in `env`."""
    settings = services.settings
    environment = settings.environment(env)
    messages: list[str] = []

    async def progress(text: str) -> None:
        messages.append(text)

    values: dict[str, Any] = {
        "settings": settings, "environment": environment,
        "app": settings.app(app, environment.name),
        "kube": services.kube.for_context(environment.kube_context), "dry_run": dry_run,
        "actor": "U0ALICE", "execution_id": "test-execution",
        "log": logging.LoggerAdapter(logging.getLogger("opsbot.test"), {}),
        "progress": progress,
    }
    wanted = {f.name for f in dataclasses.fields(HandlerContext)}
    if "records" in wanted:
        values["records"] = getattr(services.dispatcher, "records", None)
    return HandlerContext(**{k: v for k, v in values.items() if k in wanted})


def services_with(tmp_path: Path, db_url: str, apps: dict[str, Any],
                  environ: dict[str, str]) -> Services:
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    for name, extra in apps.items():
        raw["apps"].setdefault(name, {}).update(extra)
    config = tmp_path / "opsbot.yaml"
    config.write_text(yaml.safe_dump(raw))
    settings = load_settings(config, environ={"OPSBOT_DATABASE_URL": db_url, **environ})
    return Services.build(settings, registry=Registry.builtin())


@pytest.fixture
def argocd(argocd_server: ArgoCDStandIn) -> ArgoCDStandIn:
    argocd_server.reset()
    argocd_server.add_app(APP, history=("1.2.0", "1.3.0", "1.4.0"),
                           image="registry.example.com/shop/api")
    return argocd_server


@pytest.fixture
def services(argocd: ArgoCDStandIn, tmp_path: Path, db_url: str) -> Iterator[Services]:
    built = services_with(tmp_path, db_url, {"shop-api": {"deploy": {"strategy": "argocd"}}},
                          {"ARGOCD_URL": argocd.url, "ARGOCD_TOKEN": TOKEN})
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def ctx(services: Services) -> HandlerContext:
    return handler_context(services, "shop-api")


async def follow(ctx: HandlerContext, plan: Plan, polls: int = 12) -> Progress:
    for _ in range(polls):
        state = await STRATEGY.progress(ctx, plan)
        if state.done or state.failed:
            return state
    return state


def test_revision_from_tags_and_images() -> None:
    assert revision_from("1.5.0") == "1.5.0"
    assert revision_from("v1.5.0") == "v1.5.0"
    assert revision_from("registry.example.com/shop/api:1.5.0") == "1.5.0"
    assert revision_from("registry.example.com:5000/shop/api:1.5.0") == "1.5.0"
    assert revision_from("release/2024-05") == "release/2024-05"
    for bad in ("registry.example.com/shop/api@sha256:abc", "registry.example.com/shop/api",
                "a b", "../x", "main..evil"):
        with pytest.raises(PermanentError):
            revision_from(bad)


async def test_plan_deploy_syncs_a_revision(ctx: HandlerContext) -> None:
    plan = await STRATEGY.plan_deploy(ctx, "registry.example.com/shop/api:1.5.0")
    assert (plan.kind, plan.target, plan.namespace) == ("Application", APP, "argocd")
    assert plan.current_revision == "2"  # the Argo CD history id, as rollback --to takes
    fields = dict(plan.fields())
    assert fields["Sync revision"] == "1.4.0 → 1.5.0"
    assert fields["Target"] == f"Application argocd/{APP} (argocd)"
    assert plan.details["revision"] == "1.5.0" and plan.details["history_id"] == 2


async def test_deploy_applies_and_follows_to_healthy(ctx: HandlerContext,
                                                     argocd: ArgoCDStandIn) -> None:
    plan = await STRATEGY.plan_deploy(ctx, "1.5.0")
    summary = await STRATEGY.apply(ctx, plan)
    assert summary == f"Argo CD is syncing {APP} to 1.5.0"
    first = await STRATEGY.progress(ctx, plan)
    assert not first.done and not first.failed
    state = await follow(ctx, plan)
    assert state.done and not state.failed
    # The revision reported (and audited) names the Argo CD deployment exactly, not a bare id.
    entry = argocd.app(APP)["status"]["history"][-1]
    assert entry["id"] == 3
    assert state.revision == f"argocd:{APP}:3:{entry['deployedAt']}"
    assert plain(state.message) == (f"{APP} runs 1.5.0: Healthy, OutOfSync (the app tracks "
                                    "`1.4.0` in git)")
    assert argocd.app(APP)["status"]["summary"]["images"] == [
        "registry.example.com/shop/api:1.5.0"]


async def test_degraded_deploy_fails_and_revert_rolls_back(ctx: HandlerContext,
                                                           argocd: ArgoCDStandIn) -> None:
    argocd.script_degrade(APP, 'Deployment "shop-api" exceeded its progress deadline')
    plan = await STRATEGY.plan_deploy(ctx, "1.5.0")
    await STRATEGY.apply(ctx, plan)
    state = await follow(ctx, plan)
    assert state.failed
    assert state.message == (f'{APP} is Degraded on 1.5.0: Deployment "shop-api" exceeded its '
                             "progress deadline")
    summary = await STRATEGY.revert(ctx, plan, "the rollout failed")
    assert summary == f"Argo CD is rolling {APP} back to 1.4.0 (#2)"
    assert argocd.calls_to("POST", "/rollback")[-1].body == {"id": 2, "prune": False,
                                                             "dryRun": False}
    state = await follow(ctx, plan)  # as deploy.revert follows it: the same plan
    assert state.done and state.message == f"{APP} runs 1.4.0: Synced, Healthy"


async def test_failed_sync_operation_fails(ctx: HandlerContext, argocd: ArgoCDStandIn) -> None:
    argocd.script_sync_failure(APP)
    plan = await STRATEGY.plan_deploy(ctx, "1.5.0")
    await STRATEGY.apply(ctx, plan)
    state = await follow(ctx, plan)
    assert state.failed
    assert state.message == (f"{APP}: sync Failed: one or more objects failed to apply, reason: "
                             "admission webhook denied the request")


async def test_deploy_refused_while_auto_sync_tracks_git(ctx: HandlerContext,
                                                         argocd: ArgoCDStandIn) -> None:
    argocd.set_auto_sync(APP, True)
    with pytest.raises(Refused) as err:
        await STRATEGY.plan_deploy(ctx, "1.5.0")
    assert "syncs itself from `1.4.0` (auto-sync is on)" in plain(str(err.value))
    with pytest.raises(Refused, match=re.escape("already runs 1.4.0")):
        await STRATEGY.plan_deploy(ctx, "1.4.0")


async def test_rollback_to_previous_history_entry(ctx: HandlerContext) -> None:
    plan = await STRATEGY.plan_rollback(ctx, None)
    assert dict(plan.fields())["Sync revision"] == "1.4.0 (#2) → 1.3.0 (#1)"
    assert plan.target_revision == "1" and plan.action == "rollback"
    assert await STRATEGY.apply(ctx, plan) == f"Argo CD is rolling {APP} back to 1.3.0 (#1)"
    state = await follow(ctx, plan)
    assert state.done and plain(state.message) == (
        f"{APP} runs 1.3.0: Healthy, OutOfSync (the app tracks `1.4.0` in git)")


async def test_rollback_to_unknown_id_lists_the_history(ctx: HandlerContext) -> None:
    with pytest.raises(PermanentError, match=r"no deployment #7 in its history \(ids: 0, 1, 2\)"):
        await STRATEGY.plan_rollback(ctx, 7)
    with pytest.raises(Refused, match=re.escape("already runs 1.4.0 (#2); nothing to roll back")):
        await STRATEGY.plan_rollback(ctx, 2)


async def test_rollback_refused_while_auto_sync_is_on(ctx: HandlerContext,
                                                      argocd: ArgoCDStandIn) -> None:
    argocd.set_auto_sync(APP, True)
    with pytest.raises(Refused) as err:
        await STRATEGY.plan_rollback(ctx, 1)
    text = str(err.value)
    assert text.startswith("rollback cannot be initiated when auto-sync is enabled")
    assert "`rollback shop-api --env staging --disable-autosync`" in text
    assert not argocd.calls_to("POST")


async def test_rollback_disabling_auto_sync_leaves_it_off(ctx: HandlerContext,
                                                          argocd: ArgoCDStandIn) -> None:
    argocd.set_auto_sync(APP, True)
    plan = await STRATEGY.plan_rollback(ctx, 1, disable_auto_sync=True)
    assert dict(plan.fields())["Auto-sync"] == "on → off"
    summary = await STRATEGY.apply(ctx, plan)
    assert "auto-sync is now OFF and stays off until someone re-enables it" in summary
    assert [c.method for c in argocd.calls if c.method != "GET"] == ["PATCH", "POST"]
    state = await follow(ctx, plan)
    assert state.done
    assert "automated" not in argocd.app(APP)["spec"]["syncPolicy"]  # never re-enabled


async def test_revert_with_auto_sync_on_syncs_back(ctx: HandlerContext,
                                                   argocd: ArgoCDStandIn) -> None:
    plan = await STRATEGY.plan_deploy(ctx, "1.5.0")
    await STRATEGY.apply(ctx, plan)
    await follow(ctx, plan)
    argocd.set_auto_sync(APP, True)  # someone turned it on meanwhile; git still says 1.4.0
    summary = await STRATEGY.revert(ctx, plan, "analysis failed")
    assert summary == (f"Argo CD is syncing {APP} back to 1.4.0 (auto-sync is on: no Argo CD "
                       "rollback)")
    assert not argocd.calls_to("POST", "/rollback")
    state = await follow(ctx, plan)
    assert state.done and state.message == f"{APP} runs 1.4.0: Synced, Healthy"


async def test_apply_refuses_a_stale_plan(ctx: HandlerContext, argocd: ArgoCDStandIn) -> None:
    plan = await STRATEGY.plan_deploy(ctx, "1.5.0")
    other = await STRATEGY.plan_deploy(ctx, "1.6.0")
    await STRATEGY.apply(ctx, other)
    await follow(ctx, other)
    with pytest.raises(PermanentError, match="deployed by someone else since this plan"):
        await STRATEGY.apply(ctx, plan)


async def test_not_configured(tmp_path: Path, db_url: str) -> None:
    built = services_with(tmp_path, db_url, {"shop-api": {"deploy": {"strategy": "argocd"}}}, {})
    try:
        with pytest.raises(ConfigError, match="set ARGOCD_URL and ARGOCD_TOKEN"):
            await STRATEGY.plan_deploy(handler_context(built, "shop-api"), "1.5.0")
    finally:
        built.close()


async def test_rollback_command_refused_under_auto_sync(services: Services,
                                                        argocd: ArgoCDStandIn) -> None:
    argocd.set_auto_sync(APP, True)
    rep = RecordingReporter()
    await services.dispatcher.dispatch(
        Trigger(source="console", actor="U0ALICE", text="rollback shop-api"), rep)
    assert rep.final.status == "refused"
    plan_step = rep.final.steps[0]
    assert plan_step.summary.startswith(
        "rollback cannot be initiated when auto-sync is enabled: Argo CD app "
        f"`{APP}` syncs itself from git")
    assert not argocd.calls_to("POST") and not argocd.calls_to("PATCH")
