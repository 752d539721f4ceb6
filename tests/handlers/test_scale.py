from __future__ import annotations

from typing import Any

from tests.handlers.conftest import Run, deployment


async def test_scale_changes_replicas_and_waits(run: Run, sim: Any) -> None:
    outcome, rep = await run("scale shop-web 4")
    assert outcome.status == "succeeded", rep.final.summary
    step = rep.final.steps[0]
    assert dict(step.fields)["Replicas"] == "2 → 4"
    assert step.summary.startswith("scaled shop-web from 2 to 4 replicas; 4/4 ready")
    assert deployment(sim, "shop-staging", "shop-web")["spec"]["replicas"] == 4


async def test_scale_statuses_progress_in_place(run: Run) -> None:
    _, rep = await run("scale shop-web 3")
    ids = {v.execution_id for v in rep.views}
    assert len(ids) == 1
    assert rep.views[0].status == "running"
    assert rep.final.status == "succeeded"


async def test_scale_dry_run_changes_nothing(run: Run, sim: Any) -> None:
    before = sim.snapshot()
    outcome, rep = await run("scale shop-api 7 --dry-run")
    assert outcome.status == "succeeded"
    assert rep.final.steps[0].summary == "would scale shop-api from 3 to 7 replicas"
    assert rep.final.dry_run
    sim.wait_idle()
    assert sim.snapshot() == before


async def test_scale_outside_bounds_refused_before_anything(run: Run, sim: Any) -> None:
    before = sim.snapshot()
    outcome, rep = await run("scale shop-api 11")
    assert outcome.status == "usage"
    assert "shop-api may run 1 to 10 replicas in staging; 11 is outside that" in rep.notices[0].text
    assert not rep.views
    assert sim.snapshot() == before


async def test_scale_same_count_is_refused(run: Run, services: Any) -> None:
    outcome, rep = await run("scale shop-api 3")
    assert outcome.status == "refused" and outcome.execution_id == rep.final.execution_id
    assert rep.final.status == "refused"
    assert rep.final.summary == "shop-api already runs 3 replicas; nothing to change"
    record = services.store.get_execution(outcome.execution_id)
    assert record is not None and record.status == "refused"
    assert [s.status for s in record.steps] == ["refused"]


async def test_scale_retries_a_conflict(run: Run, sim: Any) -> None:
    sim.faults.inject(method="PUT", path=r".*/deployments/shop-web/scale$", status=409, times=1)
    outcome, rep = await run("scale shop-web 3")
    assert outcome.status == "succeeded", rep.final.summary
    assert any("retrying (1/3)" in (v.steps[0].progress or "") for v in rep.views)
    assert deployment(sim, "shop-staging", "shop-web")["spec"]["replicas"] == 3


async def test_scale_persistent_server_error_fails_cleanly(run: Run, sim: Any) -> None:
    sim.faults.inject(method="PUT", path=r".*/deployments/shop-web/scale$", status=500, times=5)
    outcome, rep = await run("scale shop-web 3")
    assert outcome.status == "failed"
    assert "the Kubernetes API failed (500)" in rep.final.steps[0].summary
    assert deployment(sim, "shop-staging", "shop-web")["spec"]["replicas"] == 2


async def test_viewer_denied_names_role(run: Run, sim: Any) -> None:
    before = sim.snapshot()
    outcome, rep = await run("scale shop-api 5", user="mallory")
    assert outcome.status == "denied"
    assert "needs the role `deployer` or `sre`" in rep.notices[0].text
    assert sim.snapshot() == before


async def test_prod_mutation_waits_for_approval(run: Run, sim: Any) -> None:
    before = sim.snapshot()
    outcome, rep = await run("scale shop-api 5 --env prod")
    assert outcome.status == "pending_approval"
    assert "`prod` requires approval" in rep.notices[0].text
    assert sim.snapshot() == before


async def test_prod_dry_run_allowed(run: Run) -> None:
    outcome, rep = await run("scale shop-api 5 --env prod --dry-run")
    assert outcome.status == "succeeded"
    assert rep.final.steps[0].summary == "would scale shop-api from 3 to 5 replicas"
