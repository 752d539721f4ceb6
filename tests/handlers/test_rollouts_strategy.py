"""The `argo-rollouts` strategy and the promote/abort runbooks against the simulated cluster's
Rollout controller: plan, apply, a canary paused for a person, revert, undo, and refusals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from bot.errors import PermanentError, Refused
from bot.registry import HandlerContext
from bot.services import Services
from bot.trigger import Trigger
from handlers.deploy.plan import Plan
from handlers.deploy.rollouts import STRATEGY, RolloutView, merge_diff, rollout_health
from handlers.deploy.strategy import Health, Progress, health, pod_labels
from tests.conftest import RecordingReporter
from tests.handlers.test_argocd_strategy import handler_context, services_with

NS, NAME = "shop-staging", "shop-canary"
REPO = "registry.example.com/shop/canary"
ARGS = ("argoproj.io", "v1alpha1", NS, "rollouts")
ROLLOUT: dict[str, Any] = {
    "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
    "metadata": {"name": NAME, "labels": {"app": NAME}},
    "spec": {
        "replicas": 4,
        "selector": {"matchLabels": {"app": NAME}},
        "template": {"metadata": {"labels": {"app": NAME}},
                     "spec": {"containers": [{"name": "app", "image": f"{REPO}:1.0.0"}]}},
        "strategy": {"canary": {"steps": [{"setWeight": 25}, {"pause": {}},
                                          {"setWeight": 50}, {"pause": {}}]}},
    },
}
CANARY_APP: dict[str, Any] = {"kind": "Deployment", "container": "app", "image": REPO,
              "replicas": {"min": 1, "max": 10}, "environments": ["staging"],
              "deploy": {"strategy": "argo-rollouts", "timeout_seconds": 20}}


@pytest.fixture
def services(sim: Any, kubeconfig: Path, tmp_path: Path, db_url: str) -> Iterator[Services]:
    built = services_with(tmp_path, db_url, {"shop-canary": CANARY_APP},
                          {"KUBECONFIG": str(kubeconfig)})
    built.kube.for_context(None).custom.create_namespaced_custom_object(*ARGS, ROLLOUT)
    sim.wait_idle()
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def ctx(services: Services) -> HandlerContext:
    return handler_context(services, "shop-canary")


def rollout(custom: client.CustomObjectsApi, name: str = NAME) -> dict[str, Any]:
    obj: dict[str, Any] = custom.get_namespaced_custom_object(*ARGS, name)
    return obj


async def settled(ctx: HandlerContext, plan: Plan, sim: Any) -> Progress:
    sim.wait_idle()
    return await STRATEGY.progress(ctx, plan)


async def deploy(ctx: HandlerContext, sim: Any, tag: str) -> Plan:
    plan = await STRATEGY.plan_deploy(ctx, tag)
    await STRATEGY.apply(ctx, plan)
    sim.wait_idle()
    return plan


def test_merge_diff() -> None:
    assert merge_diff({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": 2}, "e": [1]}) == {
        "a": None, "b": {"d": None}, "e": [1]}


async def test_image_from_another_repository_is_refused(ctx: HandlerContext) -> None:
    # The same rule as the kubernetes strategy: a chat message cannot pick the registry.
    assert (await STRATEGY.plan_deploy(ctx, "1.1.0")).changes[0].after == f"{REPO}:1.1.0"
    with pytest.raises(Refused, match="is not from this app's repository"):
        await STRATEGY.plan_deploy(ctx, "other.example.com/x:2")


async def test_deploy_runs_the_canary_to_its_first_pause(ctx: HandlerContext, sim: Any) -> None:
    plan = await STRATEGY.plan_deploy(ctx, "1.1.0")
    assert (plan.kind, plan.target, plan.current_revision, plan.replicas) == (
        "Rollout", NAME, "1", 4)
    assert dict(plan.fields())["Image (app)"] == f"{REPO}:1.0.0 → {REPO}:1.1.0"
    summary = await STRATEGY.apply(ctx, plan)
    assert summary == f"set the image of {NAME} (app) to {REPO}:1.1.0; the canary starts"
    state = await settled(ctx, plan, sim)
    assert state.done and not state.failed and state.revision == "2"
    assert state.message == (f"{NAME} is paused at step 2/4 (canary weight 25%): "
                             "promote or abort")
    with pytest.raises(Refused, match="in the middle of a canary"):
        await STRATEGY.plan_deploy(ctx, "1.2.0")


async def test_same_image_is_refused(ctx: HandlerContext) -> None:
    with pytest.raises(Refused, match=f"already runs {REPO}:1.0.0"):
        await STRATEGY.plan_deploy(ctx, "1.0.0")


async def test_revert_aborts_and_restores_the_stable_version(
        ctx: HandlerContext, sim: Any, custom: client.CustomObjectsApi) -> None:
    plan = await deploy(ctx, sim, "1.1.0")
    summary = await STRATEGY.revert(ctx, plan, "analysis failed")
    assert summary == f"aborted and rolled {NAME} back to revision 1 ({REPO}:1.0.0)"
    state = await settled(ctx, plan, sim)
    assert state.done, state.message
    assert state.message == f"{NAME} is Healthy, 4/4 available, revision 3"
    obj = rollout(custom)
    assert obj["spec"]["template"]["spec"]["containers"][0]["image"] == f"{REPO}:1.0.0"
    assert "abort" not in obj["status"]  # the restored stable template clears it


async def test_progress_fails_when_the_canary_misses_its_deadline(ctx: HandlerContext,
                                                                  sim: Any) -> None:
    sim.script_never_ready(NS, NAME)
    plan = await deploy(ctx, sim, "1.1.0")
    state = await STRATEGY.progress(ctx, plan)
    assert not state.done and not state.failed
    assert state.message == f"{NAME} is Progressing: more replicas need to be updated"
    sim.advance(601)
    state = await settled(ctx, plan, sim)
    assert state.failed and "ProgressDeadlineExceeded" in state.message


async def test_rollback_undoes_to_the_previous_revision(
        ctx: HandlerContext, sim: Any, custom: client.CustomObjectsApi) -> None:
    await deploy(ctx, sim, "1.1.0")
    custom.patch_namespaced_custom_object_status(*ARGS, NAME, {"status": {"promoteFull": True}})
    sim.wait_idle()
    plan = await STRATEGY.plan_rollback(ctx, None)
    fields = dict(plan.fields())
    assert fields["Image (app)"] == f"{REPO}:1.1.0 → {REPO}:1.0.0"
    assert fields["Revision"] == "2 → 1" and plan.target_revision == "1"
    assert await STRATEGY.apply(ctx, plan) == f"rolled {NAME} back to revision 1 ({REPO}:1.0.0)"
    state = await settled(ctx, plan, sim)
    assert state.done and "paused at step 2/4" in state.message  # an undo is a canary too
    assert rollout(custom)["metadata"]["annotations"]["rollout.argoproj.io/revision"] == "3"


async def test_rollback_to_unknown_revision(ctx: HandlerContext) -> None:
    with pytest.raises(PermanentError, match=r"has no revision 9 \(revisions: 1\)"):
        await STRATEGY.plan_rollback(ctx, 9)
    with pytest.raises(Refused, match="already runs the template of revision 1"):
        await STRATEGY.plan_rollback(ctx, 1)


# -- health before a deploy, and where the pods are ---------------------------------------


async def test_health_and_pod_labels_follow_the_strategy(services: Services,
                                                        ctx: HandlerContext) -> None:
    assert await health(ctx) == Health(True, f"Rollout {NAME}", "Healthy, 4/4 available")
    assert await pod_labels(ctx) == {"app": NAME}
    api = handler_context(services, "shop-api")  # the kubernetes strategy: its Deployment
    assert await health(api) == Health(True, "shop-api", "3/3 ready")
    assert await pod_labels(api) == {"app": "shop-api"}


def view(status: dict[str, Any], **spec: Any) -> RolloutView:
    obj = {**ROLLOUT, "metadata": {**ROLLOUT["metadata"], "generation": 2}}
    return RolloutView({**obj, "spec": {**ROLLOUT["spec"], **spec},
                        "status": {"observedGeneration": "2", "replicas": 4, **status}})


def test_rollout_health_cases() -> None:
    done = {"stableRS": "a", "currentPodHash": "a", "availableReplicas": 4}
    assert rollout_health(view({**done, "phase": "Healthy"})).healthy
    assert rollout_health(view({**done, "observedGeneration": "1"})).message == (
        "the Rollouts controller has not seen its latest change")
    assert rollout_health(view({**done, "phase": "Healthy", "availableReplicas": 3})) == Health(
        False, f"Rollout {NAME}", "Healthy, 3/4 available")
    canary = {"stableRS": "a", "currentPodHash": "b", "availableReplicas": 4}
    assert rollout_health(view({**canary, "phase": "Paused"}, paused=True)).message == (
        "a canary is manually paused: promote or abort it")
    assert rollout_health(view({**canary, "phase": "Progressing", "currentStepIndex": 0,
                                "message": "more replicas need to be updated"})).message == (
        "a canary is in progress at step 1/4 (canary weight 25%), Progressing: more replicas "
        "need to be updated")
    aborted = {**canary, "abort": True, "phase": "Degraded", "availableReplicas": 2}
    assert rollout_health(view(aborted)) == Health(
        False, f"Rollout {NAME}", "aborted, its stable version serves: 2/4 available")


# -- promote and abort, end to end through the dispatcher --------------------------------


async def run(services: Services, text: str) -> RecordingReporter:
    rep = RecordingReporter()
    await services.dispatcher.dispatch(Trigger(source="console", actor="U0ALICE", text=text), rep)
    return rep


async def test_promote_walks_the_canary_to_healthy(services: Services, ctx: HandlerContext,
                                                  sim: Any,
                                                  custom: client.CustomObjectsApi) -> None:
    await deploy(ctx, sim, "1.1.0")
    before = sim.snapshot()
    rep = await run(services, "promote shop-canary --dry-run")
    assert rep.final.status == "succeeded", rep.final.summary
    step = rep.final.steps[0]
    assert step.summary == f"would promote {NAME} from step 2/4 (canary weight 25%)"
    assert dict(step.fields)["Canary"] == f"revision 2: {REPO}:1.1.0"
    sim.wait_idle()
    assert sim.snapshot() == before

    rep = await run(services, "promote shop-canary")
    assert rep.final.status == "succeeded", rep.final.summary
    assert rep.final.steps[0].summary == (
        f"promoted {NAME} from step 2/4 (canary weight 25%); now {NAME} is paused at step 4/4 "
        "(canary weight 50%)")
    assert [b.label for b in rep.final.buttons] == ["Status"]
    rep = await run(services, "promote shop-canary")
    assert rep.final.status == "succeeded", rep.final.summary
    assert rep.final.steps[0].summary.endswith(f"now {NAME} is Healthy, 4/4 available, "
                                               "revision 2")
    rep = await run(services, "promote shop-canary")
    assert rep.final.status == "refused"
    assert "is not in a canary" in rep.final.steps[0].summary


async def test_abort_returns_traffic_to_stable(services: Services, ctx: HandlerContext,
                                              sim: Any, custom: client.CustomObjectsApi) -> None:
    rep = await run(services, "abort shop-canary")
    assert rep.final.status == "refused" and "nothing to abort" in rep.final.steps[0].summary
    await deploy(ctx, sim, "1.1.0")
    rep = await run(services, "abort shop-canary --dry-run")
    assert rep.final.steps[0].summary == (
        f"would abort the canary of {NAME} at step 2/4 (canary weight 25%): the canary scales "
        "to 0 and the stable version takes all 4 replicas")
    assert not rollout(custom)["status"].get("abort")
    rep = await run(services, "abort shop-canary")
    assert rep.final.status == "succeeded", rep.final.summary
    assert rep.final.steps[0].summary == (
        f"aborted the canary of {NAME}; now {NAME} is aborted (Degraded): the stable set "
        f"serves, 4/4 available. Its spec still names {REPO}:1.1.0: roll back to make that "
        "permanent, or deploy a fix")
    assert rollout(custom)["status"]["abort"] is True
    rep = await run(services, "promote shop-canary")
    assert rep.final.status == "refused" and "was aborted" in rep.final.steps[0].summary


async def test_promote_refused_for_other_strategies(services: Services, sim: Any) -> None:
    before = sim.snapshot()
    rep = await run(services, "promote shop-api")
    assert rep.final.status == "refused"
    assert rep.final.steps[0].summary == (
        "shop-api is deployed with the `kubernetes` strategy in staging, not Argo Rollouts: "
        "there is no canary to promote")
    rep = await run(services, "abort shop-web")
    assert "there is no canary to abort" in rep.final.steps[0].summary
    assert sim.snapshot() == before
