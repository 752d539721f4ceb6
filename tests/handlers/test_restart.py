from __future__ import annotations

from typing import Any

from tests.handlers.conftest import Run, deployment

ANNOTATION = "kubectl.kubernetes.io/restartedAt"


async def test_restart_sets_annotation_and_rolls_new_revision(run: Run, sim: Any) -> None:
    outcome, rep = await run("restart shop-api")
    assert outcome.status == "succeeded", rep.final.summary
    dep = deployment(sim, "shop-staging", "shop-api")
    assert ANNOTATION in dep["spec"]["template"]["metadata"]["annotations"]
    assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "4"
    fields = dict(rep.final.steps[0].fields)
    assert fields["Revision"] == "3 → 4"
    assert rep.final.steps[0].summary == "restarted shop-api: 3/3 ready"


async def test_restart_dry_run_changes_nothing(run: Run, sim: Any) -> None:
    before = sim.snapshot()
    outcome, rep = await run("restart shop-api --dry-run")
    assert outcome.status == "succeeded"
    assert rep.final.steps[0].summary.startswith("would restart shop-api")
    sim.wait_idle()
    assert sim.snapshot() == before


async def test_restart_paused_deployment_refused(run: Run, sim: Any, services: Any) -> None:
    apps = services.kube.for_context(None).apps
    apps.patch_namespaced_deployment("shop-web", "shop-staging", {"spec": {"paused": True}})
    outcome, rep = await run("restart shop-web")
    assert outcome.status == "refused"
    assert "paused" in rep.final.steps[0].summary
    # Refused before anything changed: nothing to diagnose, nothing to follow up.
    assert [(s.name, s.status) for s in rep.final.steps] == [("Restart", "refused")]
    assert rep.final.buttons == []

    # The same in a dry run: its plan is a refusal, not a plan.
    outcome, rep = await run("restart shop-web --dry-run")
    assert outcome.status == "refused" and "paused" in rep.final.summary
