from __future__ import annotations

from tests.handlers.conftest import Run


async def test_status_reports_image_revision_replicas(run: Run) -> None:
    outcome, rep = await run("status shop-api")
    assert outcome.status == "succeeded"
    step = rep.final.steps[0]
    fields = dict(step.fields)
    assert fields["Image (api)"] == "registry.example.com/shop/api:1.4.0"
    assert fields["Revision"] == "3"
    assert fields["Replicas"].startswith("3 desired · 3 ready · 3 updated · 3 available")
    assert fields["Condition Available"].startswith("True")
    assert step.summary.startswith("shop-api: 3/3 ready, healthy")


async def test_status_in_prod_is_read_only_and_allowed(run: Run) -> None:
    outcome, rep = await run("status shop-web --env prod", user="mallory")
    assert outcome.status == "succeeded"
    assert "shop-web: 2/2 ready" in rep.final.steps[0].summary
    assert rep.final.environment == "prod"


async def test_status_offers_diagnose_button(run: Run) -> None:
    _, rep = await run("status shop-api")
    assert [(b.label, b.command) for b in rep.final.buttons] == [
        ("Diagnose", "diag shop-api --env staging")
    ]


async def test_unknown_app_suggests_closest(run: Run) -> None:
    outcome, rep = await run("status shop-apj")
    assert outcome.status == "usage"
    assert "did you mean `shop-api`" in rep.notices[0].text
    assert not rep.views


async def test_unknown_environment_suggests_closest(run: Run) -> None:
    outcome, rep = await run("status shop-api --env prd")
    assert outcome.status == "usage"
    assert "unknown environment `prd`: did you mean `prod`?" in rep.notices[0].text


async def test_missing_workload_is_a_clear_failure(run: Run, sim: object) -> None:
    sim.faults.inject(method="GET", path=r".*/deployments/shop-api$", status=404, times=1)  # type: ignore[attr-defined]
    outcome, rep = await run("status shop-api")
    assert outcome.status == "failed"
    assert "does not exist in namespace `shop-staging`" in rep.final.steps[0].summary
