"""`backup verify`: a test restore into a scratch namespace through the simulated cluster's
Velero, compared with the backup's resource list (read as Velero hands it out: a
DownloadRequest and a signed URL); the scratch namespace is always deleted."""

from __future__ import annotations

from typing import Any

import pytest

import handlers.backup as backup_module
from tests.handlers.conftest import Run


@pytest.fixture(autouse=True)
def fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backup_module, "POLL_SECONDS", 0.05)


def namespaces(sim: Any) -> set[str]:
    listed = sim.get("/api/v1/namespaces") or {"items": []}
    return {item["metadata"]["name"] for item in listed["items"]}


def velero_objects(sim: Any, plural: str) -> list[dict[str, Any]]:
    listed = sim.get(f"/apis/velero.io/v1/namespaces/velero/{plural}") or {"items": []}
    return list(listed["items"])


async def backed_up(run: Run, target: str = "shop-api") -> str:
    outcome, rep = await run(f"backup create {target}")
    assert outcome.status == "succeeded", rep.final
    return str(next(v for k, v in rep.final.steps[0].fields if k == "Backup"))


async def test_a_good_backup_verifies_and_the_scratch_namespace_goes(run: Run, sim: Any) -> None:
    name = await backed_up(run)
    before = namespaces(sim)
    outcome, rep = await run(f"backup verify {name}", user="bob")
    assert outcome.status == "succeeded", rep.final
    step = rep.final.steps[0]
    fields = dict(step.fields)
    assert step.summary.startswith(f"backup {name} verified")
    assert fields["Deployment"] == "1 held, 1 restored"
    assert fields["Cleanup"].endswith("deleted")
    sim.wait_idle()
    assert namespaces(sim) == before  # the scratch namespace is gone, nothing else changed
    assert velero_objects(sim, "downloadrequests") == []
    [restore] = velero_objects(sim, "restores")
    assert restore["spec"]["namespaceMapping"] == {"shop-staging": fields["Scratch namespace"]}


async def test_a_failed_test_restore_fails_the_check_and_still_cleans_up(
        run: Run, sim: Any) -> None:
    name = await backed_up(run, "shop-staging")
    sim.script_restore(f"{name}-verify", "Failed")
    before = namespaces(sim)
    outcome, rep = await run(f"backup verify {name}", user="bob")
    assert outcome.status == "failed"
    step = rep.final.steps[0]
    assert f"backup {name} did NOT verify" in step.summary
    assert "failed" in step.summary
    sim.wait_idle()
    assert namespaces(sim) == before


async def test_objects_missing_from_the_restore_fail_the_check(run: Run, sim: Any) -> None:
    name = await backed_up(run, "shop-staging")
    sim.script_restore(f"{name}-verify", "PartiallyFailed", errors=2)
    outcome, rep = await run(f"backup verify {name}", user="bob")
    step = rep.final.steps[0]
    if outcome.status == "succeeded":  # the partial failure still brought everything back
        assert "verified" in step.summary
    else:
        assert "not restored" in (step.output or "") or "did NOT verify" in step.summary
    assert namespaces(sim) >= {"shop-staging"}
    assert not any(ns.startswith("opsbot-verify-") for ns in namespaces(sim))


async def test_only_finished_backups_are_verified(run: Run, sim: Any) -> None:
    sim.script_backup("shop-web-", "Failed")
    outcome, _ = await run("backup create shop-web")
    assert outcome.status == "failed"
    [failed] = [b for b in velero_objects(sim, "backups")
                if b["metadata"]["name"].startswith("shop-web-")]
    outcome, rep = await run(f"backup verify {failed['metadata']['name']}", user="bob")
    assert outcome.status == "failed"
    assert "only a Completed or PartiallyFailed backup" in rep.final.steps[0].summary
    assert velero_objects(sim, "restores") == []


async def test_dry_run_creates_nothing(run: Run, sim: Any) -> None:
    name = await backed_up(run)
    outcome, rep = await run(f"backup verify {name} --dry-run", user="bob")
    assert outcome.status == "succeeded"
    assert rep.final.steps[0].summary.startswith(f"would restore {name} into opsbot-verify-")
    assert velero_objects(sim, "restores") == []


async def test_a_prod_verification_needs_approval(run: Run, sim: Any) -> None:
    outcome, _ = await run("backup create shop-api --env prod", user="bob")
    assert outcome.status == "pending_approval"


async def test_bad_names_are_usage_errors(run: Run) -> None:
    outcome, rep = await run("backup verify Not_A_Name", user="bob")
    assert outcome.status == "usage"
    assert "Not_A_Name" in rep.notices[0].text
