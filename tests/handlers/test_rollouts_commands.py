"""Argo Rollouts apps driven as users drive them: `deploy`, `promote`, `abort`, `rollback` and
`--dry-run` through the dispatcher against the simulated cluster's Rollouts controller, with
assertions on the Rollout and its ReplicaSets as well as on what the user is told."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from bot.config import load_settings
from bot.registry import Registry
from bot.services import Services
from tests.conftest import DEMO_CONFIG, RecordingReporter
from tests.handlers.test_argocd_strategy import services_with
from tests.handlers.test_rollouts_strategy import (
    ARGS,
    CANARY_APP,
    NAME,
    NS,
    REPO,
    ROLLOUT,
    rollout,
    run,
)

# A second Rollout app whose canary has no pause: a deploy goes straight to Healthy.
QUICK, QUICK_REPO = "shop-quick", "registry.example.com/shop/quick"
QUICK_APP: dict[str, Any] = {**CANARY_APP, "image": QUICK_REPO}


def quick_rollout() -> dict[str, Any]:
    body = copy.deepcopy(ROLLOUT)
    body["metadata"] = {"name": QUICK, "labels": {"app": QUICK}}
    spec = body["spec"]
    spec["replicas"] = 2
    spec["selector"] = {"matchLabels": {"app": QUICK}}
    spec["template"] = {"metadata": {"labels": {"app": QUICK}},
                        "spec": {"containers": [{"name": "app", "image": f"{QUICK_REPO}:2.0.0"}]}}
    spec["strategy"] = {"canary": {"steps": [{"setWeight": 50}]}}
    return body


@pytest.fixture
def services(sim: Any, kubeconfig: Path, tmp_path: Path, db_url: str) -> Iterator[Services]:
    built = services_with(tmp_path, db_url, {NAME: CANARY_APP, QUICK: QUICK_APP},
                          {"KUBECONFIG": str(kubeconfig)})
    api = built.kube.for_context(None).custom
    api.create_namespaced_custom_object(*ARGS, ROLLOUT)
    api.create_namespaced_custom_object(*ARGS, quick_rollout())
    sim.wait_idle()
    try:
        yield built
    finally:
        built.close()


def image(obj: dict[str, Any]) -> str:
    return str(obj["spec"]["template"]["spec"]["containers"][0]["image"])


def replicas_by_revision(sim: Any, name: str) -> dict[str, int]:
    """Desired replicas of the Rollout's ReplicaSets, by `rollout.argoproj.io/revision`."""
    listed = sim.get(f"/apis/apps/v1/namespaces/{NS}/replicasets")
    return {rs["metadata"]["annotations"]["rollout.argoproj.io/revision"]:
            rs["spec"]["replicas"] for rs in listed["items"]
            if rs["metadata"]["name"].startswith(f"{name}-")}


def steps(rep: RecordingReporter) -> list[tuple[str, str]]:
    return [(s.name, s.status) for s in rep.final.steps]


def step(rep: RecordingReporter, name: str) -> Any:
    return next(s for s in rep.final.steps if s.name == name)


async def test_deploy_stops_at_the_first_pause_and_promote_finishes_it(
        services: Services, sim: Any, custom: client.CustomObjectsApi) -> None:
    rep = await run(services, f"deploy {NAME} 1.1.0")
    assert rep.final.status == "succeeded", rep.final
    # Without ALERTMANAGER_URL and PROMETHEUS_URL the alerts and the analysis are not checked.
    assert steps(rep) == [("Plan", "succeeded"), ("Pre-checks", "not_checked"),
                          ("Back up", "skipped"), ("Apply", "succeeded"),
                          ("Roll out", "succeeded"), ("Verify", "not_checked")]
    assert step(rep, "Pre-checks").summary == (
        f"pre-checks passed for {NAME} in staging: Rollout {NAME} Healthy, 4/4 available; "
        "1 not checked: critical alerts (ALERTMANAGER_URL is not set)")
    assert step(rep, "Roll out").summary == (
        f"rolled out: {NAME} is paused at step 2/4 (canary weight 25%): promote or abort")
    assert [b.label for b in rep.final.buttons] == ["Rollback", "Re-run"]
    sim.wait_idle()
    obj = rollout(custom)
    assert image(obj) == f"{REPO}:1.1.0"
    assert [p["reason"] for p in obj["status"]["pauseConditions"]] == ["CanaryPauseStep"]
    assert replicas_by_revision(sim, NAME) == {"1": 3, "2": 1}  # 25% of 4 on the canary

    # Another deploy in the middle of the canary is refused before anything is checked.
    before = sim.snapshot()
    rep = await run(services, f"deploy {NAME} 1.2.0")
    assert rep.final.status == "refused"
    assert steps(rep)[:2] == [("Plan", "refused"), ("Pre-checks", "pending")]
    assert step(rep, "Plan").summary == (
        f"Rollout `{NAME}` is in the middle of a canary (step 2/4 (canary weight 25%), "
        "Paused): promote or abort it before deploying again")
    sim.wait_idle()
    assert sim.snapshot() == before

    rep = await run(services, f"promote {NAME}")
    assert rep.final.status == "succeeded", rep.final
    assert rep.final.steps[0].summary.endswith(
        f"now {NAME} is paused at step 4/4 (canary weight 50%)")
    sim.wait_idle()
    assert replicas_by_revision(sim, NAME) == {"1": 2, "2": 2}

    rep = await run(services, f"promote {NAME}")
    assert rep.final.steps[0].summary.endswith(
        f"now {NAME} is Healthy, 4/4 available, revision 2")
    sim.wait_idle()
    obj = rollout(custom)
    assert obj["status"]["phase"] == "Healthy"
    assert obj["status"]["stableRS"] == obj["status"]["currentPodHash"]
    assert replicas_by_revision(sim, NAME) == {"1": 0, "2": 4}


async def test_deploy_without_a_pause_goes_to_healthy(
        services: Services, sim: Any, custom: client.CustomObjectsApi) -> None:
    rep = await run(services, f"deploy {QUICK} 2.1.0")
    assert rep.final.status == "succeeded", rep.final
    assert step(rep, "Roll out").summary == (
        f"rolled out: {QUICK} is Healthy, 2/2 available, revision 2")
    sim.wait_idle()
    obj = rollout(custom, QUICK)
    assert image(obj) == f"{QUICK_REPO}:2.1.0"
    assert obj["status"]["phase"] == "Healthy"
    assert replicas_by_revision(sim, QUICK) == {"1": 0, "2": 2}


async def test_abort_then_a_fix_can_be_deployed(
        services: Services, sim: Any, custom: client.CustomObjectsApi) -> None:
    assert (await run(services, f"deploy {NAME} 1.1.0")).final.status == "succeeded"
    rep = await run(services, f"abort {NAME}")
    assert rep.final.status == "succeeded", rep.final
    assert rep.final.steps[0].summary.startswith(
        f"aborted the canary of {NAME}; now {NAME} is aborted (Degraded)")
    sim.wait_idle()
    obj = rollout(custom)
    assert obj["status"]["abort"] is True and obj["status"]["phase"] == "Degraded"
    assert replicas_by_revision(sim, NAME) == {"1": 4, "2": 0}

    # Degraded by the abort, but the stable version serves every replica: the pre-check lets
    # the fix through, as the abort's own message suggests.
    rep = await run(services, f"deploy {NAME} 1.1.1")
    assert rep.final.status == "succeeded", rep.final
    assert (f"Rollout {NAME} aborted, its stable version serves: 4/4 available; 1 not "
            "checked: critical alerts") in step(rep, "Pre-checks").summary
    sim.wait_idle()
    obj = rollout(custom)
    assert image(obj) == f"{REPO}:1.1.1" and "abort" not in obj["status"]
    assert obj["status"]["phase"] == "Paused"


async def test_a_failed_rollout_is_rolled_back_automatically(
        services: Services, sim: Any, custom: client.CustomObjectsApi) -> None:
    sim.script_image_pull_error("canary:1.9.9")
    task = asyncio.create_task(run(services, f"deploy {NAME} 1.9.9"))
    await stalled_canary(custom, sim)
    sim.advance(601)  # past progressDeadlineSeconds: the controller marks it Degraded
    rep = await asyncio.wait_for(task, 30)
    assert rep.final.status == "failed"
    assert steps(rep)[3:] == [("Apply", "succeeded"), ("Roll out", "failed"),
                              ("Verify", "pending"), ("Roll back automatically", "succeeded")]
    assert "ProgressDeadlineExceeded" in step(rep, "Roll out").summary
    revert = step(rep, "Roll back automatically")
    assert revert.summary == (
        f"rolled back automatically: aborted and rolled {NAME} back to revision 1 "
        f"({REPO}:1.0.0); {NAME} is Healthy, 4/4 available, revision 3")
    assert "ProgressDeadlineExceeded" in dict(revert.fields)["Reason"]
    assert [b.label for b in rep.final.buttons] == ["Diagnose", "Re-run"]
    sim.wait_idle()
    obj = rollout(custom)
    assert image(obj) == f"{REPO}:1.0.0"
    assert obj["status"]["phase"] == "Healthy" and "abort" not in obj["status"]
    assert replicas_by_revision(sim, NAME) == {"3": 4, "2": 0}  # revision 1's set, renumbered


async def test_a_degraded_canary_is_to_be_aborted_not_promoted(
        services: Services, sim: Any, custom: client.CustomObjectsApi) -> None:
    sim.script_image_pull_error("canary:1.9.9")
    custom.patch_namespaced_custom_object(*ARGS, NAME, {"spec": {"template": {"spec": {
        "containers": [{"name": "app", "image": f"{REPO}:1.9.9"}]}}}})
    await stalled_canary(custom, sim)
    sim.advance(601)
    sim.wait_idle()
    assert rollout(custom)["status"]["phase"] == "Degraded"
    rep = await run(services, f"deploy {NAME} 1.1.1")
    plan = step(rep, "Plan")
    assert plan.status == "refused"
    assert plan.summary.endswith("Degraded): abort it before deploying again"), plan.summary
    assert image(rollout(custom)) == f"{REPO}:1.9.9"


async def stalled_canary(custom: client.CustomObjectsApi, sim: Any) -> None:
    """Until the new canary exists and its pods are stuck (nothing moves any more)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        status = rollout(custom).get("status") or {}
        if status.get("currentPodHash") != status.get("stableRS") and \
                status.get("updatedReplicas"):
            await asyncio.to_thread(sim.wait_idle)
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the canary never started: {rollout(custom).get('status')}")


async def test_rollback_mid_canary_returns_to_the_stable_version(
        services: Services, sim: Any, custom: client.CustomObjectsApi) -> None:
    assert (await run(services, f"deploy {NAME} 1.1.0")).final.status == "succeeded"
    rep = await run(services, f"rollback {NAME}")
    assert rep.final.status == "succeeded", rep.final
    plan = dict(step(rep, "Plan").fields)
    assert plan["Image (app)"] == f"{REPO}:1.1.0 → {REPO}:1.0.0"
    assert plan["Revision"] == "2 → 1"
    assert step(rep, "Apply").summary == f"rolled {NAME} back to revision 1 ({REPO}:1.0.0)"
    # The stable version needs no canary: it serves again at once.
    assert step(rep, "Roll out").summary == (
        f"rolled out: {NAME} is Healthy, 4/4 available, revision 3")
    sim.wait_idle()
    obj = rollout(custom)
    assert image(obj) == f"{REPO}:1.0.0" and obj["status"]["phase"] == "Healthy"
    assert replicas_by_revision(sim, NAME) == {"3": 4, "2": 0}


async def test_rollback_to_a_named_revision(
        services: Services, sim: Any, custom: client.CustomObjectsApi) -> None:
    for tag in ("2.1.0", "2.2.0"):
        assert (await run(services, f"deploy {QUICK} {tag}")).final.status == "succeeded"
    sim.wait_idle()
    assert replicas_by_revision(sim, QUICK) == {"1": 0, "2": 0, "3": 2}

    before = sim.snapshot()
    rep = await run(services, f"rollback {QUICK} --to 1 --dry-run")
    assert rep.final.status == "succeeded", rep.final
    assert step(rep, "Plan").summary == (
        f"would rollback {QUICK}: image (app) {QUICK_REPO}:2.2.0 → {QUICK_REPO}:2.0.0; "
        "revision 3 → 1")
    sim.wait_idle()
    assert sim.snapshot() == before

    rep = await run(services, f"rollback {QUICK} --to 1")
    assert rep.final.status == "succeeded", rep.final
    assert step(rep, "Roll out").summary == (
        f"rolled out: {QUICK} is Healthy, 2/2 available, revision 4")
    sim.wait_idle()
    obj = rollout(custom, QUICK)
    assert image(obj) == f"{QUICK_REPO}:2.0.0"
    assert replicas_by_revision(sim, QUICK) == {"4": 2, "2": 0, "3": 0}

    rep = await run(services, f"rollback {QUICK} --to 9")
    assert rep.final.status == "failed"
    assert step(rep, "Plan").summary == (
        f"Rollout `{QUICK}` has no revision 9 (revisions: 2, 3, 4)")


async def test_deploy_dry_run_changes_nothing(
        services: Services, sim: Any, custom: client.CustomObjectsApi) -> None:
    before = sim.snapshot()
    rep = await run(services, f"deploy {NAME} 1.1.0 --dry-run")
    assert rep.final.status == "succeeded", rep.final
    assert step(rep, "Plan").summary == (
        f"would deploy {NAME}: image (app) {REPO}:1.0.0 → {REPO}:1.1.0")
    assert dict(step(rep, "Plan").fields)["Target"] == f"Rollout {NS}/{NAME} (argo-rollouts)"
    assert step(rep, "Pre-checks").status == "not_checked"  # no ALERTMANAGER_URL
    assert [s.status for s in rep.final.steps][2:5] == ["skipped", "skipped", "skipped"]
    assert [(b.label, b.command) for b in rep.final.buttons] == [
        ("Run it", f"deploy {NAME} 1.1.0")]
    sim.wait_idle()
    assert sim.snapshot() == before
    assert image(rollout(custom)) == f"{REPO}:1.0.0"


async def test_prechecks_refuse_a_degraded_rollout(
        services: Services, sim: Any, custom: client.CustomObjectsApi) -> None:
    # Its pods lose availability (a replacement pod never gets ready) and stay so past the
    # progress deadline: the fully promoted Rollout turns Degraded.
    sim.script_never_ready(NS, QUICK)
    core = services.kube.for_context(None).core
    pod = core.list_namespaced_pod(NS, label_selector=f"app={QUICK}").items[0]
    core.delete_namespaced_pod(pod.metadata.name, NS)
    sim.wait_idle()
    sim.advance(601)
    sim.wait_idle()
    obj = rollout(custom, QUICK)
    assert obj["status"]["phase"] == "Degraded", obj["status"]

    before = sim.snapshot()
    rep = await run(services, f"deploy {QUICK} 2.1.0")
    assert rep.final.status == "failed"
    assert steps(rep)[:4] == [("Plan", "succeeded"), ("Pre-checks", "failed"),
                              ("Back up", "pending"), ("Apply", "pending")]
    checks = step(rep, "Pre-checks")
    rs = f"{QUICK}-{obj['status']['stableRS']}"
    assert checks.summary == (
        f"Rollout {QUICK} is not healthy (Degraded, 1/2 available: ProgressDeadlineExceeded: "
        f'ReplicaSet "{rs}" has timed out progressing.); let it recover or fix it first, then '
        "deploy")
    assert dict(checks.fields)["Healthy"].startswith("✗ Degraded, 1/2 available")
    assert step(rep, "Roll back automatically").status == "skipped"  # nothing was applied
    sim.wait_idle()
    assert sim.snapshot() == before


async def test_pre_deploy_backup_of_a_rollout_app(sim: Any, kubeconfig: Path, tmp_path: Path,
                                                  db_url: str) -> None:
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["apps"][NAME] = CANARY_APP
    raw["environments"]["staging"]["deploy"] = {"prechecks": {"backup": True}}
    config = tmp_path / "backup-first.yaml"
    config.write_text(yaml.safe_dump(raw))
    settings = load_settings(config, environ={"OPSBOT_DATABASE_URL": db_url,
                                              "KUBECONFIG": str(kubeconfig)})
    services = Services.build(settings, registry=Registry.builtin())
    try:
        services.kube.for_context(None).custom.create_namespaced_custom_object(*ARGS, ROLLOUT)
        sim.wait_idle()
        rep = await run(services, f"deploy {NAME} 1.1.0")
        assert step(rep, "Back up").status == "succeeded", step(rep, "Back up").summary
        [backup] = sim.get("/apis/velero.io/v1/namespaces/velero/backups")["items"]
        assert backup["spec"]["labelSelector"] == {"matchLabels": {"app": NAME}}
    finally:
        services.close()
