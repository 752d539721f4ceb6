"""Deploy with the kubernetes strategy: plan, dry run, pre-checks, rollout, automatic rollback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.services import Services
from tests.handlers.deploy_support import deploy_services, dispatch

API = "/apis/apps/v1/namespaces/shop-staging/deployments/shop-api"


@pytest.fixture
def svc(tmp_path: Path, kubeconfig: Path, db_url: str) -> Iterator[Services]:
    with deploy_services(tmp_path, kubeconfig, db_url) as services:
        yield services


def _image(sim: Any) -> str:
    return sim.get(API)["spec"]["template"]["spec"]["containers"][0]["image"]  # type: ignore[no-any-return]


async def test_deploy_tag_rolls_out(svc: Services, sim: Any) -> None:
    rep = await dispatch(svc, "deploy shop-api 1.5.0")
    assert rep.final.status == "succeeded", rep.final.summary
    names = [(s.name, s.status) for s in rep.final.steps]
    assert names[:5] == [
        ("Plan", "succeeded"),
        ("Pre-checks", "succeeded"),
        ("Back up", "skipped"),  # deploy.prechecks.backup is off in staging
        ("Apply", "succeeded"),
        ("Roll out", "succeeded"),
    ]
    plan = dict(rep.final.steps[0].fields)
    assert plan["Image (api)"] == (
        "registry.example.com/shop/api:1.4.0 → registry.example.com/shop/api:1.5.0"
    )
    assert _image(sim) == "registry.example.com/shop/api:1.5.0"
    dep = sim.get(API)
    assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "4"
    assert "by U0ALICE" in dep["metadata"]["annotations"]["kubernetes.io/change-cause"]
    assert [b.label for b in rep.final.buttons] == ["Rollback", "Re-run"]


async def test_deploy_progress_updates_in_place(svc: Services) -> None:
    rep = await dispatch(svc, "deploy shop-api 1.5.0")
    assert len({v.execution_id for v in rep.views}) == 1
    assert any(v.steps[3].status == "running" for v in rep.views)


async def test_deploy_dry_run_shows_plan_and_changes_nothing(svc: Services, sim: Any) -> None:
    before = sim.snapshot()
    rep = await dispatch(svc, "deploy shop-api 1.5.0 --dry-run")
    assert rep.final.status == "succeeded"
    assert rep.final.steps[0].summary == (
        "would deploy shop-api: image (api) registry.example.com/shop/api:1.4.0 → "
        "registry.example.com/shop/api:1.5.0"
    )
    assert [s.status for s in rep.final.steps][2:4] == ["skipped", "skipped"]
    assert [(b.label, b.command) for b in rep.final.buttons] == [
        ("Run it", "deploy shop-api 1.5.0")
    ]
    sim.wait_idle()
    assert sim.snapshot() == before


async def test_noop_deploy_refused(svc: Services, sim: Any) -> None:
    before = sim.snapshot()
    rep = await dispatch(svc, "deploy shop-api 1.4.0")
    assert rep.final.status == "failed"
    assert "already runs registry.example.com/shop/api:1.4.0" in rep.final.steps[0].summary
    assert sim.snapshot() == before


async def test_invalid_image_reference(svc: Services, sim: Any) -> None:
    rep = await dispatch(svc, "deploy shop-api 'bad image!'")
    assert rep.outcome.status == "usage"  # type: ignore[attr-defined]
    assert "is not an image reference or tag" in rep.notices[0].text


async def test_image_from_another_repository_refused(svc: Services, sim: Any) -> None:
    before = sim.snapshot()
    rep = await dispatch(svc, "deploy shop-api evil.example.com/miner:1.0")
    assert rep.final.status == "failed"
    assert "is not from this app's repository" in rep.final.steps[0].summary
    assert sim.snapshot() == before


async def test_full_image_reference_from_the_repository(svc: Services, sim: Any) -> None:
    rep = await dispatch(svc, "deploy shop-api registry.example.com/shop/api:1.5.1")
    assert rep.final.status == "succeeded", rep.final.summary
    assert _image(sim) == "registry.example.com/shop/api:1.5.1"


async def test_unhealthy_workload_fails_prechecks(svc: Services, sim: Any) -> None:
    before = sim.snapshot()
    rep = await dispatch(svc, "deploy shop-worker 1.5.0")
    assert rep.final.status == "failed"
    assert rep.final.steps[1].name == "Pre-checks" and rep.final.steps[1].status == "failed"
    assert sim.snapshot() == before  # nothing applied, nothing rolled back
    assert [b.label for b in rep.final.buttons] == ["Diagnose"]


async def test_stuck_rollout_rolls_back_automatically(
    tmp_path: Path, kubeconfig: Path, db_url: str, sim: Any
) -> None:
    sim.script_image_pull_error("api:1.6.0")
    with deploy_services(tmp_path, kubeconfig, db_url, timeout_seconds=3) as services:
        rep = await dispatch(services, "deploy shop-api 1.6.0")
    assert rep.final.status == "failed"
    rollout = next(s for s in rep.final.steps if s.name == "Roll out")
    assert rollout.status == "failed" and "not done after 3s" in rollout.summary
    revert = rep.final.steps[-1]
    assert revert.name == "Roll back automatically" and revert.status == "succeeded"
    assert "rolled back automatically" in revert.summary
    assert dict(revert.fields)["Reason"].startswith("Roll out: rollout failed")
    assert _image(sim) == "registry.example.com/shop/api:1.4.0"
    # The old ReplicaSet is reused as a new revision, as the real controller does.
    assert sim.get(API)["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "5"


async def test_auto_rollback_is_audited(
    tmp_path: Path, kubeconfig: Path, db_url: str, sim: Any
) -> None:
    sim.script_image_pull_error("api:1.6.0")
    with deploy_services(tmp_path, kubeconfig, db_url, timeout_seconds=2) as services:
        rep = await dispatch(services, "deploy shop-api 1.6.0")
        records = [
            r for r in services.store.export_audit() if r["execution_id"] == rep.final.execution_id
        ]
    final = records[-1]
    assert final["outcome"] == "failed"
    assert final["details"]["revisions"] == {"rollout": "4", "revert": "5"}


async def test_progress_deadline_exceeded_fails_fast(
    tmp_path: Path, kubeconfig: Path, db_url: str, sim: Any
) -> None:
    sim.script_never_ready("shop-staging", "shop-web")
    with deploy_services(tmp_path, kubeconfig, db_url, timeout_seconds=30) as services:
        import asyncio

        task = asyncio.create_task(dispatch(services, "deploy shop-web 2.2.0"))
        await asyncio.sleep(2)
        sim.advance(700)  # past progressDeadlineSeconds (600)
        rep = await asyncio.wait_for(task, 60)
    rollout = next(s for s in rep.final.steps if s.name == "Roll out")
    assert "progress deadline exceeded" in rollout.summary
