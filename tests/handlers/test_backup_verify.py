"""`backup verify`: a test restore into a scratch namespace through the simulated cluster's
Velero, compared with the backup's resource list (read as Velero hands it out: a
DownloadRequest and a signed URL); the scratch namespace is always deleted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

import handlers.backup as backup_module
from bot.config import Settings, settings_from_mapping
from bot.errors import ConfigError
from bot.services import Services
from tests.conftest import DEMO_CONFIG, RecordingReporter
from tests.handlers.conftest import Run


@pytest.fixture(autouse=True)
def fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backup_module.common, "POLL_SECONDS", 0.05)


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
    # The backup also holds a kind opsbot does not compare: not checked, and said so.
    assert fields["HorizontalPodAutoscaler"] == "1 held; not checked"
    assert step.status == "not_checked"
    assert step.summary.startswith(f"backup {name} verified for the kinds opsbot compares: ")
    assert step.summary.endswith("; 1 not checked: HorizontalPodAutoscaler (1 held; opsbot "
                                 "does not compare this kind)")
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
    assert outcome.status == "refused"
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


# -- the scheduled verification -----------------------------------------------------------


def with_verify_cron(kubeconfig: Path, tmp_path: Path, cron: str | None) -> Settings:
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["backup"] = {"verify_cron": cron, "report_channel": "C0BACKUPS"} if cron else {}
    return settings_from_mapping(raw, environ={
        "KUBECONFIG": str(kubeconfig),
        "OPSBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'scheduled.db'}"})


async def test_the_verification_is_scheduled_from_the_config(kubeconfig: Path,
                                                             tmp_path: Path) -> None:
    services = Services.build(with_verify_cron(kubeconfig, tmp_path, "30 6 * * *"))
    try:
        await services.start()
        assert services.scheduler is not None
        [(_, next_run)] = [j for j in services.scheduler.jobs() if j[0] == "verify-backups"]
        assert next_run is not None and (next_run.hour, next_run.minute) == (6, 30)
    finally:
        await services.stop()
        services.close()
    # Taken out of the config, the stored job goes at the next start.
    services = Services.build(with_verify_cron(kubeconfig, tmp_path, None))
    try:
        await services.start()
        assert services.scheduler is not None
        assert "verify-backups" not in [j[0] for j in services.scheduler.jobs()]
    finally:
        await services.stop()
        services.close()


async def test_a_scheduled_time_runs_once_however_many_schedulers_fire_it(
        kubeconfig: Path, tmp_path: Path) -> None:
    """Two processes' schedulers (a console's next to the leader's, or a deposed leader's)
    firing the same scheduled verification: one run."""
    from bot import scheduler

    settings = with_verify_cron(kubeconfig, tmp_path, "0 * * * *")  # its hour's :00 fire
    runs: list[str] = []
    first, second = Services.build(settings), Services.build(settings)
    try:
        for services, name in ((first, "first"), (second, "second")):
            async def verify(name: str = name) -> list[Any]:
                runs.append(name)
                return []
            services.verify_backups = verify  # type: ignore[method-assign]
        await first.start()
        await scheduler.verify_backups_job()
        await first.stop()
        await second.start()
        await scheduler.verify_backups_job()  # the same minute, another process
        await second.stop()
    finally:
        first.close()
        second.close()
    assert runs == ["first"]


def test_a_bad_cron_is_a_config_error(kubeconfig: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="verify_cron"):
        with_verify_cron(kubeconfig, tmp_path, "every morning")


async def test_scheduled_verification_posts_only_failures(
        run: Run, sim: Any, kubeconfig: Path, tmp_path: Path) -> None:
    good = await backed_up(run, "shop-api")
    bad = await backed_up(run, "shop-web")
    sim.script_restore(f"{bad}-verify", "Failed")
    posted: list[tuple[str | None, Any]] = []

    def report_to(channel: str | None) -> Any:
        recorder = RecordingReporter()
        posted.append((channel, recorder))
        return recorder

    settings = with_verify_cron(kubeconfig, tmp_path, "0 6 * * *")
    services = Services.build(settings, report_to=report_to)
    try:
        outcomes = await services.verify_backups()
    finally:
        services.close()
    # Every app of every environment was checked, prod too, without an approval request.
    assert len(outcomes) == 5 and not [o for o in outcomes if o.status == "pending_approval"]
    assert sorted(o.status for o in outcomes) == ["failed", "succeeded", "succeeded",
                                                  "succeeded", "succeeded"]
    shown = [(channel, rec.final) for channel, rec in posted if rec.views]
    assert len(shown) == 1
    channel, final = shown[0]
    assert channel == "C0BACKUPS" and final.status == "failed"
    assert f"backup {bad} did NOT verify" in final.steps[0].summary
    executions = {e.command: e for e in services.store.recent_executions(20)
                  if e.source == "schedule"}
    assert executions["run backup-verify-latest app=shop-api --env staging"].status == \
        "succeeded"
    assert good in (executions["run backup-verify-latest app=shop-api --env staging"].summary
                    or "")
    # An app with no backup to verify was not checked, not passed.
    unverified = executions["run backup-verify-latest app=shop-worker --env staging"]
    assert unverified.status == "succeeded"
    assert [(s.status, s.summary) for s in unverified.steps] == [
        ("not_checked", "not checked: no finished backup of shop-worker in staging to verify")]
    assert not any(ns.startswith("opsbot-verify-") for ns in namespaces(sim))
