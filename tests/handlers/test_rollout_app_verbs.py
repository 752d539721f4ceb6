"""`status`, `diag`, `scale` and `restart` of an app deployed with Argo Rollouts, through the
dispatcher against the simulated cluster's Rollouts controller: they read and change the
Rollout (its scale subresource, `spec.restartAt`), never a Deployment of the app's name."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from bot.services import Services
from tests.handlers.conftest import Run
from tests.handlers.test_argocd_strategy import services_with
from tests.handlers.test_rollouts_strategy import (
    ARGS,
    CANARY_APP,
    NAME,
    NS,
    REPO,
    ROLLOUT,
    rollout,
)

BACKDATE = 60  # seconds the Rollout's pods have run before each test starts


@pytest.fixture
def services(sim: Any, kubeconfig: Path, tmp_path: Path, db_url: str) -> Iterator[Services]:
    built = services_with(tmp_path, db_url, {NAME: CANARY_APP}, {"KUBECONFIG": str(kubeconfig)})
    # Pods created a minute ago: a restart's `restartAt` (now) is then strictly newer.
    sim.advance(-BACKDATE)
    built.kube.for_context(None).custom.create_namespaced_custom_object(*ARGS, ROLLOUT)
    sim.wait_idle()
    sim.advance(BACKDATE)
    try:
        yield built
    finally:
        built.close()


def pods(sim: Any) -> dict[str, dict[str, Any]]:
    listed = sim.get(f"/api/v1/namespaces/{NS}/pods")
    return {p["metadata"]["uid"]: p for p in listed["items"]
            if p["metadata"].get("labels", {}).get("app") == NAME}


def start_canary(custom: client.CustomObjectsApi, sim: Any, tag: str = "1.1.0") -> None:
    """A new image, as a deploy sets it: the canary runs to its first pause (weight 25%)."""
    custom.patch_namespaced_custom_object(*ARGS, NAME, {"spec": {"template": {"spec": {
        "containers": [{"name": "app", "image": f"{REPO}:{tag}"}]}}}})
    sim.wait_idle()


async def test_status_of_a_healthy_rollout(run: Run) -> None:
    outcome, rep = await run(f"status {NAME}")
    assert outcome.status == "succeeded", rep.final.steps[0].summary
    step = rep.final.steps[0]
    assert step.summary == f"{NAME}: 4/4 ready, healthy; {REPO}:1.0.0 (revision 1)"
    fields = dict(step.fields)
    assert fields["Workload"] == f"Rollout {NS}/{NAME}"
    assert fields["Image (app)"] == f"{REPO}:1.0.0"
    assert fields["Phase"] == "Healthy"
    assert "Step" not in fields
    assert fields["Replicas"] == "4 desired · 4 ready · 4 updated · 4 available"
    assert fields["Condition Available"].startswith("True")
    assert fields["Condition Progressing"] == "True (NewReplicaSetAvailable): Rollout is healthy"


async def test_status_of_a_paused_canary_shows_both_versions(
        run: Run, sim: Any, custom: client.CustomObjectsApi) -> None:
    start_canary(custom, sim)
    outcome, rep = await run(f"status {NAME}")
    assert outcome.status == "succeeded"
    step = rep.final.steps[0]
    assert step.summary == (
        f"{NAME}: 4/4 ready, paused at step 2/4 (canary weight 25%): promote or abort; "
        f"canary {REPO}:1.1.0, stable {REPO}:1.0.0 (revision 2)")
    fields = dict(step.fields)
    assert fields["Stable image (app)"] == f"{REPO}:1.0.0"
    assert fields["Canary image (app)"] == f"{REPO}:1.1.0"
    assert fields["Phase"] == "Paused (CanaryPauseStep)"
    assert fields["Step"] == "step 2/4 (canary weight 25%)"
    assert fields["Replicas"] == "4 desired · 4 ready · 1 updated · 4 available"
    assert fields["Condition Progressing"] == "Unknown (RolloutPaused): Rollout is paused"


async def test_diag_names_the_canary_crash_loop(
        run: Run, sim: Any, custom: client.CustomObjectsApi) -> None:
    start_canary(custom, sim)
    canary = f"{NAME}-{rollout(custom)['status']['currentPodHash']}"
    sim.script_crashloop(NS, canary, "app", reason="Error", exit_code=3, restarts=5,
                         log="ERROR app: cannot parse config")
    sim.wait_idle()
    outcome, rep = await run(f"diag {NAME}")
    assert outcome.status == "succeeded", rep.final.steps[0].summary
    step = rep.final.steps[0]
    assert step.summary.startswith(f"{NAME}: Error 5 times")
    assert step.summary.endswith("; last exit code 3; now in CrashLoopBackOff")
    fields = dict(step.fields)
    assert fields["Pods"] == "3/4 ready (4 desired)"  # 3 stable, 1 canary (25%)
    assert fields["Restarts"] == "5"
    output = step.output or ""
    assert f"PREVIOUS LOG {canary}-" in output
    assert "ERROR app: cannot parse config" in output
    assert "BackOff" in output  # the canary pod's warning events


async def test_scale_within_bounds_goes_through_the_scale_subresource(
        run: Run, sim: Any, custom: client.CustomObjectsApi) -> None:
    outcome, rep = await run(f"scale {NAME} 6")
    assert outcome.status == "succeeded", rep.final.steps[0].summary
    step = rep.final.steps[0]
    assert dict(step.fields)["Replicas"] == "4 → 6"
    assert step.summary == f"scaled {NAME} from 4 to 6 replicas; 6/6 ready"
    sim.wait_idle()
    obj = rollout(custom)
    assert obj["spec"]["replicas"] == 6
    assert obj["status"]["availableReplicas"] == 6
    assert len(pods(sim)) == 6
    scale = custom.get_namespaced_custom_object_scale(*ARGS, NAME)
    assert (scale["spec"], scale["status"]) == (
        {"replicas": 6}, {"replicas": 6, "selector": f"app={NAME}"})


async def test_scale_of_a_paused_canary_keeps_its_weight(
        run: Run, sim: Any, custom: client.CustomObjectsApi) -> None:
    start_canary(custom, sim)
    outcome, rep = await run(f"scale {NAME} 8")
    assert outcome.status == "succeeded", rep.final.steps[0].summary
    assert rep.final.steps[0].summary == (
        f"scaled {NAME} from 4 to 8 replicas; 8/8 ready, paused at step 2/4 "
        "(canary weight 25%)")
    sim.wait_idle()
    assert rollout(custom)["status"]["updatedReplicas"] == 2  # 25% of 8 on the canary


async def test_scale_outside_bounds_or_dry_run_changes_nothing(run: Run, sim: Any) -> None:
    before = sim.snapshot()
    outcome, rep = await run(f"scale {NAME} 11")
    assert outcome.status == "usage"
    assert f"{NAME} may run 1 to 10 replicas in staging; 11 is outside that" in \
        rep.notices[0].text
    outcome, rep = await run(f"scale {NAME} 7 --dry-run")
    assert outcome.status == "succeeded"
    assert rep.final.steps[0].summary == f"would scale {NAME} from 4 to 7 replicas"
    assert dict(rep.final.steps[0].fields)["Replicas"] == "4 → 7"
    sim.wait_idle()
    assert sim.snapshot() == before


async def test_restart_sets_restart_at_and_replaces_every_pod(
        run: Run, sim: Any, custom: client.CustomObjectsApi) -> None:
    old = set(pods(sim))
    revision = rollout(custom)["metadata"]["annotations"]["rollout.argoproj.io/revision"]
    outcome, rep = await run(f"restart {NAME}")
    assert outcome.status == "succeeded", rep.final.steps[0].summary
    step = rep.final.steps[0]
    assert step.summary == f"restarted {NAME}: 4/4 ready"
    fields = dict(step.fields)
    assert fields["Revision"] == f"{revision} → {revision}"  # pods replaced in place
    sim.wait_idle()
    obj = rollout(custom)
    assert obj["spec"]["restartAt"] == fields["Restarted at"]
    assert obj["status"]["restartedAt"] == obj["spec"]["restartAt"]
    annotations = obj["spec"]["template"].get("metadata", {}).get("annotations") or {}
    assert "kubectl.kubernetes.io/restartedAt" not in annotations  # no new template
    now = pods(sim)
    assert len(now) == 4 and not old & set(now)


async def test_restart_dry_run_changes_nothing(run: Run, sim: Any) -> None:
    before = sim.snapshot()
    outcome, rep = await run(f"restart {NAME} --dry-run")
    assert outcome.status == "succeeded"
    step = rep.final.steps[0]
    assert step.summary == f"would restart {NAME}: 4 pods replaced one by one"
    assert dict(step.fields)["Revision"] == "1 → 1"
    sim.wait_idle()
    assert sim.snapshot() == before
