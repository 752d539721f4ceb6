"""Handlers work on StatefulSets too: status, scale (scale subresource), restart, deploy
(image set, rollout, automatic rollback by setting the previous image back) and `rollback`
(kubectl's StatefulSetRollbacker: a ControllerRevision's data as a strategic merge patch)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.config import load_settings
from bot.errors import Refused
from bot.registry import Registry
from bot.services import Services
from bot.trigger import Trigger
from tests.conftest import DEMO_CONFIG, RecordingReporter

STATEFULSET = {
    "apiVersion": "apps/v1",
    "kind": "StatefulSet",
    "metadata": {"name": "shop-db", "namespace": "shop-staging", "labels": {"app": "shop-db"}},
    "spec": {
        "replicas": 2,
        "serviceName": "shop-db",
        "selector": {"matchLabels": {"app": "shop-db"}},
        "template": {
            "metadata": {"labels": {"app": "shop-db"}},
            "spec": {"containers": [{"name": "db", "image": "postgres:16.4"}]},
        },
    },
}


@pytest.fixture
def sts_services(sim: Any, kubeconfig: Path, db_url: str, tmp_path: Path) -> Iterator[Services]:
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["apps"]["shop-db"] = {"kind": "StatefulSet", "container": "db",
                              "replicas": {"min": 1, "max": 3}, "environments": ["staging"],
                              "deploy": {"timeout_seconds": 6}}
    config = tmp_path / "opsbot.yaml"
    config.write_text(yaml.safe_dump(raw))
    settings = load_settings(config, environ={"KUBECONFIG": str(kubeconfig),
                                              "OPSBOT_DATABASE_URL": db_url})
    services = Services.build(settings, registry=Registry.builtin())
    services.kube.for_context(None).apps.create_namespaced_stateful_set("shop-staging", STATEFULSET)
    sim.wait_idle()
    yield services
    services.close()


async def _run(services: Services, text: str) -> RecordingReporter:
    rep = RecordingReporter()
    await services.dispatcher.dispatch(Trigger(source="console", actor="U0ALICE", text=text), rep)
    return rep


async def test_statefulset_status(sts_services: Services) -> None:
    rep = await _run(sts_services, "status shop-db")
    fields = dict(rep.final.steps[0].fields)
    assert fields["Workload"] == "StatefulSet shop-staging/shop-db"
    assert fields["Image (db)"] == "postgres:16.4"
    assert rep.final.steps[0].summary.startswith("shop-db: 2/2 ready")


async def test_statefulset_scale(sts_services: Services, sim: Any) -> None:
    rep = await _run(sts_services, "scale shop-db 3")
    assert rep.final.status == "succeeded", rep.final.summary
    sts = sim.get("/apis/apps/v1/namespaces/shop-staging/statefulsets/shop-db")
    assert sts["spec"]["replicas"] == 3


async def test_statefulset_restart(sts_services: Services, sim: Any) -> None:
    rep = await _run(sts_services, "restart shop-db")
    assert rep.final.status == "succeeded", rep.final.summary
    sts = sim.get("/apis/apps/v1/namespaces/shop-staging/statefulsets/shop-db")
    assert "kubectl.kubernetes.io/restartedAt" in sts["spec"]["template"]["metadata"]["annotations"]


async def test_statefulset_diag(sts_services: Services) -> None:
    rep = await _run(sts_services, "diag shop-db")
    assert rep.final.steps[0].summary == "shop-db: healthy, 2/2 pods ready, no warning events"


async def test_statefulset_diag_of_a_crash_loop(sts_services: Services, sim: Any) -> None:
    sim.script_crashloop("shop-staging", "shop-db", "db", reason="Error", exit_code=1,
                         restarts=5, log="FATAL: could not open data directory")
    sim.wait_idle()
    rep = await _run(sts_services, "diag shop-db")
    diagnosis = rep.final.steps[0]
    assert diagnosis.summary == "shop-db: Error 10 times; last exit code 1; now in CrashLoopBackOff"
    assert "FATAL: could not open data directory" in (diagnosis.output or "")


STS = "/apis/apps/v1/namespaces/shop-staging/statefulsets/shop-db"


def _sts_image(sim: Any) -> str:
    return sim.get(STS)["spec"]["template"]["spec"]["containers"][0]["image"]  # type: ignore[no-any-return]


async def test_statefulset_deploy(sts_services: Services, sim: Any) -> None:
    before = sim.get(STS)["status"]["updateRevision"]
    rep = await _run(sts_services, "deploy shop-db 16.5")
    assert rep.final.status == "succeeded", rep.final.summary
    plan = dict(rep.final.steps[0].fields)
    assert plan["Image (db)"] == "postgres:16.4 → postgres:16.5"  # a bare tag keeps the repo
    assert plan["Target"] == "StatefulSet shop-staging/shop-db (kubernetes)"
    assert plan["Current revision"] == before
    rollout = next(s for s in rep.final.steps if s.name == "Roll out")
    assert rollout.status == "succeeded" and rollout.summary == "rolled out: 2/2 ready"
    assert _sts_image(sim) == "postgres:16.5"
    status = sim.get(STS)["status"]
    assert status["currentRevision"] == status["updateRevision"] != before
    assert status["updatedReplicas"] == 2
    # Both pods were replaced by the new revision.
    pods = sim.get("/api/v1/namespaces/shop-staging/pods")["items"]
    images = sorted(p["spec"]["containers"][0]["image"] for p in pods
                    if p["metadata"]["name"].startswith("shop-db-"))
    assert images == ["postgres:16.5", "postgres:16.5"]
    shown = await _run(sts_services, "status shop-db")
    assert dict(shown.final.steps[0].fields)["Image (db)"] == "postgres:16.5"


async def test_statefulset_failed_deploy_sets_previous_image_back(
    sts_services: Services, sim: Any
) -> None:
    sim.script_image_pull_error("postgres:16.9")
    rep = await _run(sts_services, "deploy shop-db 16.9")
    assert rep.final.status == "failed"
    rollout = next(s for s in rep.final.steps if s.name == "Roll out")
    assert rollout.status == "failed" and "not done after 6s" in rollout.summary
    revert = rep.final.steps[-1]
    assert revert.name == "Roll back automatically"
    assert dict(revert.fields)["Reason"].startswith("Roll out: rollout failed")
    # StatefulSets have no ReplicaSet history: the revert deploys the previous image again,
    # and deletes the pod stuck on the failed image (Kubernetes' "forced rollback"), which
    # would otherwise block the reverted rollout for good.
    assert "set shop-db back to postgres:16.4 and deleted shop-db-1" in revert.summary
    assert revert.status == "succeeded", revert.summary
    assert _sts_image(sim) == "postgres:16.4"
    sim.wait_idle()
    pods = sim.get("/api/v1/namespaces/shop-staging/pods")["items"]
    images = sorted(p["spec"]["containers"][0]["image"] for p in pods
                    if p["metadata"]["name"].startswith("shop-db-"))
    assert images == ["postgres:16.4", "postgres:16.4"]


REVISIONS = "/apis/apps/v1/namespaces/shop-staging/controllerrevisions"


def _revisions(sim: Any) -> dict[str, int]:
    """ControllerRevision name -> .revision."""
    items = sim.get(REVISIONS)["items"]
    return {r["metadata"]["name"]: r["revision"] for r in items
            if r["metadata"]["name"].startswith("shop-db-")}


def _pod_images(sim: Any) -> list[str]:
    pods = sim.get("/api/v1/namespaces/shop-staging/pods")["items"]
    return sorted(p["spec"]["containers"][0]["image"] for p in pods
                  if p["metadata"]["name"].startswith("shop-db-"))


async def _deployed(services: Services, sim: Any, *tags: str) -> None:
    for tag in tags:
        rep = await _run(services, f"deploy shop-db {tag}")
        assert rep.final.status == "succeeded", rep.final.summary
        sim.wait_idle()


async def test_statefulset_rollback_to_previous_revision(sts_services: Services, sim: Any) -> None:
    """`kubectl rollout undo`: the second-highest ControllerRevision's data goes back as a
    strategic merge patch; the controller re-uses that revision under the next number."""
    first = sim.get(STS)["status"]["updateRevision"]
    await _deployed(sts_services, sim, "16.5")
    second = sim.get(STS)["status"]["updateRevision"]
    assert _revisions(sim) == {first: 1, second: 2}
    rep = await _run(sts_services, "rollback shop-db")
    assert rep.final.status == "succeeded", rep.final.summary
    plan = dict(rep.final.steps[0].fields)
    assert plan["Revision"] == "2 → 1 (as revision 3)"
    assert plan["Image (db)"] == "postgres:16.5 → postgres:16.4"
    assert plan["Current revision"] == second
    apply = next(s for s in rep.final.steps if s.name == "Apply")
    assert apply.summary == "rolled shop-db back to the template of revision 1"
    rollout = next(s for s in rep.final.steps if s.name == "Roll out")
    assert rollout.status == "succeeded" and rollout.summary == "rolled out: 2/2 ready"
    sim.wait_idle()
    assert _sts_image(sim) == "postgres:16.4"
    # As the real controller does: no new ControllerRevision, the old one is renumbered.
    assert _revisions(sim) == {first: 3, second: 2}
    status = sim.get(STS)["status"]
    assert status["currentRevision"] == status["updateRevision"] == first
    assert _pod_images(sim) == ["postgres:16.4", "postgres:16.4"]
    # The other spec fields are untouched: `$patch: replace` applies to the template only.
    spec = sim.get(STS)["spec"]
    assert (spec["replicas"], spec["serviceName"]) == (2, "shop-db")
    # Undo again goes back to the template of revision 2 (16.5), as kubectl would.
    rep = await _run(sts_services, "rollback shop-db")
    assert rep.final.status == "succeeded", rep.final.summary
    assert dict(rep.final.steps[0].fields)["Revision"] == "3 → 2 (as revision 4)"
    sim.wait_idle()
    assert _sts_image(sim) == "postgres:16.5"
    assert _revisions(sim) == {first: 3, second: 4}


async def test_statefulset_rollback_to_named_revision(sts_services: Services, sim: Any) -> None:
    await _deployed(sts_services, sim, "16.5", "16.6")
    rep = await _run(sts_services, "rollback shop-db --to 1")
    assert rep.final.status == "succeeded", rep.final.summary
    plan = dict(rep.final.steps[0].fields)
    assert plan["Revision"] == "3 → 1 (as revision 4)"
    assert plan["Image (db)"] == "postgres:16.6 → postgres:16.4"
    sim.wait_idle()
    assert _sts_image(sim) == "postgres:16.4"
    assert sorted(_revisions(sim).values()) == [2, 3, 4]
    assert _pod_images(sim) == ["postgres:16.4", "postgres:16.4"]


async def test_statefulset_rollback_restores_the_whole_template(
    sts_services: Services, sim: Any
) -> None:
    """Not only the image: what a later change added to the template (here a restart
    annotation and an env var) is gone, as the revision's `$patch: replace` says."""
    apps = sts_services.kube.for_context(None).apps
    apps.patch_namespaced_stateful_set("shop-db", "shop-staging", {"spec": {"template": {
        "metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2024-05-01T12:00:00Z"}},
        "spec": {"containers": [{"name": "db", "env": [{"name": "MODE", "value": "fast"}]}]},
    }}})
    sim.wait_idle()
    rep = await _run(sts_services, "rollback shop-db")
    assert rep.final.status == "succeeded", rep.final.summary
    # Same image both sides: the plan names only the revision.
    assert [name for name, _ in rep.final.steps[0].fields][:2] == ["Revision", "Target"]
    sim.wait_idle()
    template = sim.get(STS)["spec"]["template"]
    assert "annotations" not in template["metadata"]
    assert "env" not in template["spec"]["containers"][0]
    assert "$patch" not in template


async def test_statefulset_rollback_dry_run_changes_nothing(
    sts_services: Services, sim: Any
) -> None:
    await _deployed(sts_services, sim, "16.5")
    before = sim.snapshot()
    rep = await _run(sts_services, "rollback shop-db --dry-run")
    assert rep.final.status == "succeeded", rep.final.summary
    assert rep.final.steps[0].summary == (
        "would rollback shop-db: revision 2 → 1 (as revision 3); "
        "image (db) postgres:16.5 → postgres:16.4")
    sim.wait_idle()
    assert sim.snapshot() == before


async def test_statefulset_rollback_refusals_change_nothing(
    sts_services: Services, sim: Any
) -> None:
    rep = await _run(sts_services, "rollback shop-db")
    assert rep.final.status == "refused"
    assert rep.final.steps[0].summary == (
        "no rollout history found for shop-db: there is no previous revision")
    await _deployed(sts_services, sim, "16.5")
    before = sim.snapshot()
    for text, status, why in (
        ("rollback shop-db --to 9", "failed",
         "revision 9 of shop-db is not in its history (known revisions: 1, 2)"),
        ("rollback shop-db --to 2", "refused",
         "shop-db already runs the template of revision 2; skipped rollback"),
    ):
        rep = await _run(sts_services, text)
        assert rep.final.status == status
        assert rep.final.steps[0].summary == why
    sim.wait_idle()
    assert sim.snapshot() == before


async def test_statefulset_rollback_plan_refused_after_a_change(
    sts_services: Services, sim: Any
) -> None:
    """Apply re-reads the StatefulSet: a new revision, or a template change the controller
    has not turned into one yet, since the plan was made refuses it."""
    from handlers.deploy.kubernetes import STRATEGY
    from tests.handlers.test_argocd_strategy import handler_context

    await _deployed(sts_services, sim, "16.5")
    ctx = handler_context(sts_services, "shop-db")
    plan = await STRATEGY.plan_rollback(ctx, None)
    apps = sts_services.kube.for_context(None).apps
    sim.manager.stop()  # the controller has not seen the change yet
    try:
        apps.patch_namespaced_stateful_set("shop-db", "shop-staging", {"spec": {"template": {
            "spec": {"containers": [{"name": "db", "image": "postgres:16.6"}]}}}})
        with pytest.raises(Refused, match="the template of shop-db changed since the plan"):
            await STRATEGY.apply(ctx, plan)
    finally:
        sim.manager.start()
    sim.wait_idle()
    with pytest.raises(Refused, match=r"shop-db changed since the plan was made \(revision"):
        await STRATEGY.apply(ctx, plan)
    assert _sts_image(sim) == "postgres:16.6"
