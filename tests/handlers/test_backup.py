"""The `backup ...` commands end to end: console trigger, dispatcher, runbooks, handlers, and the
simulated cluster holding the Velero objects. The simulated cluster's own Velero controller
moves Backups and Restores through their phases; its scripted outcomes (`sim.script_backup`,
`sim.script_restore`) and a missing storage location drive each phase path on purpose."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

import handlers.backup as backup_module
from bot.config import load_settings
from bot.registry import Registry
from bot.services import Services
from bot.trigger import Trigger
from handlers.backup import check_cron, go_duration
from simcluster.routing import Route
from tests.conftest import DEMO_CONFIG, RecordingReporter
from tests.handlers.conftest import Run

VELERO = "velero"
Obj = dict[str, Any]


@pytest.fixture(autouse=True)
def fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backup_module.common, "POLL_SECONDS", 0.05)


def objects(sim: Any, plural: str) -> list[Obj]:
    listed = sim.get(f"/apis/velero.io/v1/namespaces/{VELERO}/{plural}")
    return list((listed or {}).get("items") or [])


def backup_body(name: str, namespace: str, selector: Obj | None) -> Obj:
    spec: Obj = {"includedNamespaces": [namespace], "storageLocation": "default",
                 "ttl": "720h0m0s"}
    if selector:
        spec["labelSelector"] = {"matchLabels": selector}
    return {"apiVersion": "velero.io/v1", "kind": "Backup",
            "metadata": {"name": name, "namespace": VELERO}, "spec": spec}


def put_backup(sim: Any, name: str, namespace: str, phase: str = "Completed",
               selector: Obj | None = None) -> None:
    """A finished Backup as Velero would leave it, written whole (for list, describe and
    refusals). The simulated Velero leaves a Backup that has a phase alone and holds no
    contents for it: a restore of it would fail."""
    body = backup_body(name, namespace, selector)
    body["status"] = {"phase": phase, "startTimestamp": "2024-05-01T03:00:00Z",
                      "completionTimestamp": "2024-05-01T03:01:00Z",
                      "expiration": "2024-05-31T03:00:00Z", "errors": 0, "warnings": 1,
                      "progress": {"totalItems": 9, "itemsBackedUp": 9}}
    sim.api.create(Route("velero.io", "v1", "backups", VELERO), body)


def make_backup(sim: Any, name: str, namespace: str, selector: Obj | None = None) -> Obj:
    """A Backup the simulated Velero runs to its end, its contents recorded: one to restore."""
    sim.api.create(Route("velero.io", "v1", "backups", VELERO),
                   backup_body(name, namespace, selector))
    sim.wait_idle()
    made: Obj = sim.get(f"/apis/velero.io/v1/namespaces/{VELERO}/backups/{name}")
    assert made["status"]["phase"] == "Completed" and sim.backup_contents(name)
    return made


def one_step_at_a_time(sim: Any) -> None:
    """Slow the simulated controllers to a pass every 0.2 s (from 0.05 s), so the handler,
    polling every 0.05 s, surely reads a Backup's or Restore's progress between its first and
    last step."""
    sim.manager.tick = 0.2


def items(obj: Obj, done_key: str) -> tuple[int, int]:
    """(items done, total items) of a Backup or Restore, as its status reports them."""
    progress = obj["status"].get("progress") or {}
    return int(progress.get(done_key, 0)), int(progress["totalItems"])


# -- backup create ------------------------------------------------------------------------


async def test_create_backs_up_an_app_with_progress(run: Run, sim: Any,
                                                    services: Services) -> None:
    services.dispatcher.progress_interval = 0.0  # every update reported, not one a second
    one_step_at_a_time(sim)
    outcome, rep = await run("backup create shop-api --ttl 3d")
    assert outcome.status == "succeeded", rep.final
    [backup] = objects(sim, "backups")
    name = backup["metadata"]["name"]
    assert re.fullmatch(r"shop-api-staging-\d{14}", name)
    spec = backup["spec"]
    labels = sim.get("/apis/apps/v1/namespaces/shop-staging/deployments/shop-api"
                     )["spec"]["selector"]["matchLabels"]
    assert spec == {"includedNamespaces": ["shop-staging"],
                    "labelSelector": {"matchLabels": labels},
                    "ttl": "72h0m0s", "storageLocation": "default"}
    meta = backup["metadata"]
    assert meta["labels"] == {"opsbot.io/environment": "staging", "opsbot.io/app": "shop-api",
                              "velero.io/storage-location": "default"}  # Velero adds the last
    assert meta["annotations"]["opsbot.io/execution-id"] == outcome.execution_id
    done, total = items(backup, "itemsBackedUp")
    assert done == total > 1
    progress = [v.steps[0].progress for v in rep.views if v.steps and v.steps[0].progress]
    assert any(f"of {total} items backed up" in (p or "") and f"{total} of {total}" not in (p or "")
               for p in progress), progress
    step = rep.final.steps[0]
    assert step.summary == (f"backed up app shop-api in shop-staging as {name}: "
                            f"{total}/{total} items")
    assert dict(step.fields)["Phase"] == "Completed"
    buttons = {b.label: b.command for b in rep.final.buttons}
    assert buttons == {"Describe": f"backup describe {name} --env staging",
                       "Restore…": f"backup restore {name} --env staging --dry-run"}


async def test_create_backs_up_the_environment_namespace(run: Run, sim: Any) -> None:
    outcome, rep = await run("backup create shop-staging")
    assert outcome.status == "succeeded", rep.final
    [backup] = objects(sim, "backups")
    assert backup["metadata"]["name"].startswith("shop-staging-staging-")
    assert backup["spec"]["includedNamespaces"] == ["shop-staging"]
    assert "labelSelector" not in backup["spec"]
    assert backup["spec"]["ttl"] == "720h0m0s"  # backup.default_ttl
    assert "opsbot.io/app" not in backup["metadata"]["labels"]


@pytest.mark.parametrize(("text", "said"), [
    ("backup create shop-prod", "shop-prod is the namespace of environment prod"),
    ("backup create kube-system", "`kube-system` is neither an app of staging nor its "
                                  "namespace shop-staging"),
    ("backup create shop-worker --env prod --dry-run", "`shop-worker` is not deployed to prod; "
                                                       "it is in staging"),
])
async def test_create_refuses_other_targets(run: Run, sim: Any, text: str, said: str) -> None:
    outcome, rep = await run(text)
    assert outcome.status == "refused"
    assert said in rep.final.steps[0].summary
    assert objects(sim, "backups") == []


async def test_partially_failed_backup_reports_errors(run: Run, sim: Any) -> None:
    sim.script_backup("shop-api-", "PartiallyFailed", errors=2, warnings=3)
    outcome, rep = await run("backup create shop-api")
    assert outcome.status == "failed"
    step = rep.final.steps[0]
    [backup] = objects(sim, "backups")
    done, total = items(backup, "itemsBackedUp")
    assert done == total
    assert re.fullmatch(r"backup shop-api-staging-\d+ partially failed: 2 errors, 3 warnings, "
                        rf"{total}/{total} items backed up; see `velero backup logs .*`",
                        step.summary)
    assert dict(step.fields)["Errors"] == "2" and dict(step.fields)["Warnings"] == "3"
    assert [b.label for b in rep.final.buttons] == ["Describe", "List"]


async def test_failed_backup_reports_the_reason(run: Run, sim: Any) -> None:
    sim.script_backup("shop-web-", "Failed", failure_reason="error getting backup store: 403")
    outcome, rep = await run("backup create shop-web")
    assert outcome.status == "failed"
    assert rep.final.steps[0].summary.endswith("failed: error getting backup store: 403")


async def test_failed_validation_is_reported(run: Run,
                                             custom: client.CustomObjectsApi) -> None:
    # Velero refuses a backup whose storage location does not exist.
    custom.delete_namespaced_custom_object("velero.io", "v1", VELERO, "backupstoragelocations",
                                           "default")
    outcome, rep = await run("backup create shop-web")
    assert outcome.status == "failed"
    assert "failed validation: an existing backup storage location" in (
        rep.final.steps[0].summary)


async def test_a_backup_that_never_completes_times_out_and_stays(run: Run, sim: Any) -> None:
    sim.script_backup("shop-api-", "hang")
    outcome, rep = await run("backup create shop-api --timeout 2s")
    assert outcome.status == "failed"
    summary = rep.final.steps[0].summary
    [backup] = objects(sim, "backups")
    assert backup["status"]["phase"] == "InProgress"
    done, total = items(backup, "itemsBackedUp")
    assert "did not finish within" in summary
    assert f"still InProgress, {done}/{total} items" in summary
    assert "it is left in place" in summary


async def test_create_dry_run_creates_nothing(run: Run, sim: Any) -> None:
    outcome, rep = await run("backup create shop-api --dry-run")
    assert outcome.status == "succeeded", rep.final
    step = rep.final.steps[0]
    assert step.summary == ("would back up app shop-api in shop-staging as "
                            "shop-api-staging-<yyyymmddhhmmss>")
    assert "kind: Backup" in (step.output or "") and "ttl: 720h0m0s" in (step.output or "")
    assert objects(sim, "backups") == []


@pytest.mark.parametrize(("text", "said"), [
    ("backup create Shop_API", "does not match the expected form"),
    ("backup create shop-api --ttl banana", "`banana` is not a duration"),
    ("backup create shop-api --ttl 3x", "`3x` is not a duration"),
    # Every duration has a limit, said in the error; none reaches an OverflowError.
    ("backup create shop-api --ttl 0s", "<ttl> is at least 1m; `0s` is shorter"),
    ("backup create shop-api --ttl 99999999999999h --dry-run", "<ttl> is at most 3650d"),
    ("backup create shop-api --ttl 999999999d --dry-run", "<ttl> is at most 3650d"),
    ("backup create shop-api --ttl ２d", "`２d` is not a duration"),
    ("backup create shop-api --timeout 0s", "<timeout> is at least 1s"),
    ("backup create shop-api --timeout 25h", "<timeout> is at most 1d"),
    ('backup schedule shop-api "0 3 * * *" --ttl 3651d', "<ttl> is at most 3650d"),
    ("backup restore good --timeout 99999999999d", "<timeout> is at most 1d"),
    ("backup verify good --timeout 0s", "<timeout> is at least 1s"),
    ("backup create shop-api --ttl 1d --ttl=2d", "`--ttl` is given twice"),
    ("backup describe Bad_Name", "not a valid"),
    ("backup restore x.. --into y", "not a valid"),
    ("backup restore good --into Bad_NS", "does not match the expected form"),
    ("backup restore good --existing-resource-policy replace", "must be one of: none, update"),
    ('backup schedule shop-api "daily"', "does not match the expected form"),
    ("backup pause -bad-", "not a valid"),
])
async def test_bad_names_and_ttls_are_usage_errors(run: Run, sim: Any, text: str,
                                                  said: str) -> None:
    outcome, rep = await run(text, user="bob")
    assert outcome.status == "usage", rep.notices
    assert said in rep.notices[0].text
    assert objects(sim, "backups") == objects(sim, "restores") == objects(sim, "schedules") == []


# -- list / describe ----------------------------------------------------------------------


async def test_list_shows_the_environment_backups_only(run: Run, sim: Any) -> None:
    put_backup(sim, "nightly-staging", "shop-staging")
    put_backup(sim, "nightly-prod", "shop-prod")
    outcome, rep = await run("backup list", user="mallory")
    assert outcome.status == "succeeded", rep.final
    step = rep.final.steps[0]
    assert step.summary == "1 backups hold shop-staging; latest nightly-staging: Completed"
    lines = (step.output or "").splitlines()
    assert lines[0].split() == ["NAME", "PHASE", "STARTED", "COMPLETED", "EXPIRES", "ITEMS",
                                "LOCATION", "ERRORS/WARNINGS"]
    assert "nightly-staging  Completed  2024-05-01 03:00 UTC" in lines[1]
    assert lines[1].split()[-3:] == ["9/9", "default", "0/1"]
    assert "nightly-prod" not in (step.output or "")


async def test_describe_shows_one_backup_of_the_environment(run: Run, sim: Any) -> None:
    put_backup(sim, "nightly-staging", "shop-staging", selector={"app": "shop-api"})
    put_backup(sim, "nightly-prod", "shop-prod")
    outcome, rep = await run("backup describe nightly-staging", user="mallory")
    assert outcome.status == "succeeded", rep.final
    fields = dict(rep.final.steps[0].fields)
    assert fields["Namespaces"] == "shop-staging" and fields["Selector"] == "app=shop-api"
    assert fields["Expires"] == "2024-05-31 03:00 UTC" and fields["Items"] == "9/9"
    outcome, rep = await run("backup describe nightly-prod", user="mallory")
    assert outcome.status == "refused"
    assert "does not hold shop-staging" in rep.final.steps[0].summary
    outcome, rep = await run("backup describe missing", user="mallory")
    assert "there is no backup `missing` in velero" in rep.final.steps[0].summary


async def test_viewers_may_look_but_not_back_up(run: Run, sim: Any) -> None:
    outcome, _ = await run("backup create shop-api", user="mallory")
    assert outcome.status == "denied"
    outcome, _ = await run("backup schedules", user="mallory")
    assert outcome.status == "succeeded"
    assert objects(sim, "backups") == []


# -- restore ------------------------------------------------------------------------------


async def test_restore_into_another_namespace(run: Run, sim: Any,
                                              services: Services) -> None:
    services.dispatcher.progress_interval = 0.0
    make_backup(sim, "nightly-staging", "shop-staging", selector={"app": "shop-api"})
    one_step_at_a_time(sim)
    outcome, rep = await run("backup restore nightly-staging --into shop-staging-copy",
                             user="bob")
    assert outcome.status == "succeeded", rep.final
    [restore] = objects(sim, "restores")
    assert re.fullmatch(r"nightly-staging-restore-\d{14}", restore["metadata"]["name"])
    # What opsbot asked for; Velero appends its non-restorable resources to excludedResources.
    asked = {k: v for k, v in restore["spec"].items() if k != "excludedResources"}
    assert asked == {"backupName": "nightly-staging",
                     "includedNamespaces": ["shop-staging"],
                     "namespaceMapping": {"shop-staging": "shop-staging-copy"}}
    done, total = items(restore, "itemsRestored")
    assert done == total > 1
    assert rep.final.steps[0].summary == (
        f"restored nightly-staging into shop-staging-copy: {total}/{total} items")
    assert any("items restored" in (v.steps[0].progress or "") for v in rep.views)


async def test_restore_refuses_to_overwrite_unless_told(run: Run, sim: Any) -> None:
    labels = sim.get("/apis/apps/v1/namespaces/shop-staging/deployments/shop-api"
                     )["spec"]["selector"]["matchLabels"]
    make_backup(sim, "api-staging", "shop-staging", selector=labels)
    outcome, rep = await run("backup restore api-staging", user="bob")
    assert outcome.status == "refused"
    summary = rep.final.steps[0].summary
    assert summary.startswith("restoring api-staging into shop-staging would overwrite ")
    assert "deployment/shop-api" in summary
    assert objects(sim, "restores") == []

    outcome, rep = await run("backup restore api-staging --existing-resource-policy update",
                             user="bob")
    assert outcome.status == "succeeded", rep.final
    [restore] = objects(sim, "restores")
    assert restore["spec"]["existingResourcePolicy"] == "update"
    assert "namespaceMapping" not in restore["spec"]
    assert "deployment/shop-api" in dict(rep.final.steps[0].fields)["Existing objects"]


@pytest.mark.parametrize(("into", "said"), [
    ("shop-prod", "shop-prod is the namespace of environment prod"),
    ("velero", "restoring into velero is not allowed"),
])
async def test_restore_never_goes_into_another_environment(run: Run, sim: Any, into: str,
                                                           said: str) -> None:
    put_backup(sim, "nightly-staging", "shop-staging")
    outcome, rep = await run(f"backup restore nightly-staging --into {into}", user="bob")
    assert outcome.status == "refused"
    assert said in rep.final.steps[0].summary
    assert objects(sim, "restores") == []


async def test_restore_of_a_failed_backup_is_refused(run: Run, sim: Any) -> None:
    put_backup(sim, "broken", "shop-staging", phase="Failed")
    outcome, rep = await run("backup restore broken --into scratch", user="bob")
    assert outcome.status == "refused"
    assert "backup broken is Failed" in rep.final.steps[0].summary


async def test_prod_restore_needs_approval(run: Run, sim: Any) -> None:
    make_backup(sim, "nightly-prod", "shop-prod")
    outcome, _ = await run("backup restore nightly-prod --into shop-prod-copy --env prod",
                           user="bob")
    assert outcome.status == "pending_approval" and outcome.request_id
    assert objects(sim, "restores") == []
    outcome, rep = await run(f"approve {outcome.request_id}", user="carol")
    assert outcome.status == "succeeded", rep.notices
    [restore] = objects(sim, "restores")
    assert restore["spec"]["namespaceMapping"] == {"shop-prod": "shop-prod-copy"}


async def test_restore_dry_run_creates_nothing(run: Run, sim: Any) -> None:
    put_backup(sim, "nightly-staging", "shop-staging")
    outcome, rep = await run("backup restore nightly-staging --into scratch --dry-run",
                             user="bob")
    assert outcome.status == "succeeded", rep.final
    assert rep.final.steps[0].summary.startswith("would restore nightly-staging into scratch")
    assert "namespaceMapping" in (rep.final.steps[0].output or "")
    assert objects(sim, "restores") == []


# -- schedules ----------------------------------------------------------------------------


async def test_schedule_list_pause_and_unpause(run: Run, sim: Any) -> None:
    outcome, rep = await run('backup schedule shop-api "0 3 * * *" --ttl 7d', user="bob")
    assert outcome.status == "succeeded", rep.final
    [schedule] = objects(sim, "schedules")
    assert schedule["metadata"]["name"] == "shop-api-staging"
    spec = schedule["spec"]
    assert spec["schedule"] == "0 3 * * *" and spec["paused"] is False
    assert spec["template"]["includedNamespaces"] == ["shop-staging"]
    assert spec["template"]["ttl"] == "168h0m0s"
    assert "matchLabels" in spec["template"]["labelSelector"]

    outcome, rep = await run('backup schedule shop-api "30 4 * * 1-5"', user="bob")
    assert outcome.status == "succeeded", rep.final
    assert dict(rep.final.steps[0].fields)["Cron"] == "0 3 * * * → 30 4 * * 1-5"
    assert objects(sim, "schedules")[0]["spec"]["schedule"] == "30 4 * * 1-5"

    outcome, rep = await run("backup schedules")
    assert rep.final.steps[0].summary == "1 schedules back up shop-staging, 0 paused"
    assert "shop-api-staging  30 4 * * 1-5" in (rep.final.steps[0].output or "")

    outcome, rep = await run("backup pause shop-api-staging", user="bob")
    assert outcome.status == "succeeded" and rep.final.steps[0].summary == (
        "paused schedule shop-api-staging")
    assert objects(sim, "schedules")[0]["spec"]["paused"] is True
    outcome, rep = await run("backup pause shop-api-staging", user="bob")
    assert outcome.status == "refused"  # a no-op is refused, as a deploy of the running tag
    assert rep.final.summary == "schedule shop-api-staging is already paused; nothing to change"
    _, rep = await run("backup schedules")
    assert rep.final.steps[0].summary.endswith("1 paused")
    outcome, _ = await run("backup unpause shop-api-staging", user="bob")
    assert outcome.status == "succeeded"
    assert objects(sim, "schedules")[0]["spec"]["paused"] is False


async def test_velero_alert_diagnosis_offers_a_retry(run: Run, sim: Any) -> None:
    outcome, _ = await run('backup schedule shop-api "0 3 * * *"', user="bob")
    assert outcome.status == "succeeded"
    put_backup(sim, "shop-api-staging-20240501030000", "shop-staging", phase="Failed")
    outcome, rep = await run("run alert-velero-backup schedule=shop-api-staging", user="bob")
    assert outcome.status == "succeeded", rep.final
    buttons = {b.label: b.command for b in rep.final.buttons}
    assert buttons["Retry backup"] == "backup create shop-api --env staging"


async def test_schedule_cron_is_checked_before_anything_is_sent(run: Run, sim: Any) -> None:
    outcome, rep = await run('backup schedule shop-api "61 * * * *"', user="bob")
    assert outcome.status == "failed"
    assert "minute: `61` is not a value from 0 to 59" in rep.final.steps[0].summary
    assert objects(sim, "schedules") == []


def test_check_cron() -> None:
    assert check_cron("0 3 * * *") == "0 3 * * *"
    assert check_cron("*/15 0-6,22 1 jan,Jul mon-fri") == "*/15 0-6,22 1 jan,Jul mon-fri"
    for bad, said in [("0 3 * *", "has 4 fields"), ("0 24 * * *", "hour"),
                      ("0 3 0 * *", "day of month"), ("0 3 * 13 *", "month"),
                      ("0 3 * * 8", "day of week"), ("*/0 * * * *", "bad step"),
                      ("x * * * *", "minute"),
                      # Velero's parser reads 0-9 only; isdigit() took these as 0 and 15.
                      ("٠ 3 * * *", "minute"), ("*/１５ * * * *", "bad step")]:
        with pytest.raises(ValueError, match=said):
            check_cron(bad)


def test_go_duration() -> None:
    assert go_duration("720h") == "720h0m0s"
    assert go_duration("1d12h30m") == "36h30m0s"


async def test_pause_of_an_unknown_schedule_is_refused(run: Run) -> None:
    outcome, rep = await run("backup pause nope", user="bob")
    assert outcome.status == "refused"
    assert "there is no schedule `nope` in velero" in rep.final.steps[0].summary


# -- pre-deploy backup --------------------------------------------------------------------


@pytest.fixture
def predeploy(kubeconfig: Path, tmp_path: Path) -> Iterator[Services]:
    """The demo world with deploy.prechecks.backup on in staging, and the deploy runbook with
    the pre-deploy backup step before Apply."""
    deploy = yaml.safe_load((Path(backup_module.__file__).parents[2] / "runbooks"
                             / "deploy.yaml").read_text())
    if not any(s["handler"] == "backup.create" for s in deploy["steps"]):
        at = [s["id"] for s in deploy["steps"]].index("apply")
        deploy["steps"].insert(at, {"id": "backup", "name": "Back up",
                                    "handler": "backup.create",
                                    "when": "env.deploy.prechecks.backup and not dry_run"})
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbooks" / "deploy.yaml").write_text(yaml.safe_dump(deploy))
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["runbook_dirs"] = [str(tmp_path / "runbooks")]
    raw["environments"]["staging"]["deploy"] = {"verify": False,
                                                "prechecks": {"backup": True}}
    config = tmp_path / "opsbot.yaml"
    config.write_text(yaml.safe_dump(raw))
    settings = load_settings(config, environ={
        "KUBECONFIG": str(kubeconfig), "OPSBOT_DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite"})
    services = Services.build(settings, registry=Registry.builtin())
    yield services
    services.close()


async def test_deploy_backs_up_first_when_the_environment_asks(
    predeploy: Services, sim: Any
) -> None:
    rep = RecordingReporter()
    await predeploy.dispatcher.dispatch(
        Trigger(source="console", actor="U0ALICE", text="deploy shop-api 1.5.0"), rep)
    steps = [(s.name, s.status) for s in rep.final.steps]
    # (Without ALERTMANAGER_URL the alert pre-check is not checked.)
    assert steps[:4] == [("Plan", "succeeded"), ("Pre-checks", "not_checked"),
                         ("Back up", "succeeded"), ("Apply", "succeeded")], rep.final
    [backup] = objects(sim, "backups")
    assert backup["metadata"]["labels"]["opsbot.io/app"] == "shop-api"

    sim.script_backup("shop-web-", "Failed")
    rep = RecordingReporter()
    await predeploy.dispatcher.dispatch(
        Trigger(source="console", actor="U0ALICE", text="deploy shop-web 2.2.0"), rep)
    steps = [(s.name, s.status) for s in rep.final.steps]
    assert ("Back up", "failed") in steps and ("Apply", "succeeded") not in steps


# -- a backup made by opsbot, then restored ----------------------------------------------


async def test_a_backup_opsbot_made_restores_into_another_namespace(run: Run, sim: Any) -> None:
    outcome, rep = await run("backup create shop-api")
    assert outcome.status == "succeeded", rep.final
    [backup] = objects(sim, "backups")
    name = backup["metadata"]["name"]
    assert backup["status"]["phase"] == "Completed"
    outcome, rep = await run(f"backup restore {name} --into shop-staging-copy", user="bob")
    assert outcome.status == "succeeded", rep.final
    sim.wait_idle()
    assert sim.get("/apis/apps/v1/namespaces/shop-staging-copy/deployments/shop-api")
