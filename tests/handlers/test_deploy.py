"""Deploy with the kubernetes strategy: plan, dry run, pre-checks, rollout, automatic rollback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot import messages
from bot.console.session import exit_code, run_command
from bot.services import Services
from bot.slack.mrkdwn import mrkdwn
from bot.trigger import Trigger
from tests.conftest import RecordingReporter
from tests.handlers.deploy_support import deploy_services, dispatch

API = "/apis/apps/v1/namespaces/shop-staging/deployments/shop-api"
WEB = "/apis/apps/v1/namespaces/shop-staging/deployments/shop-web"


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


async def test_an_analysis_that_did_not_run_is_not_shown_as_passed(svc: Services) -> None:
    """The issue's scenario: analysis configured for shop-api, PROMETHEUS_URL unset. The deploy
    succeeds (refusing on it is policy still to come), but Verify is not checked, stored as
    such, counted apart in the summary, and the headline does not claim all passed."""
    rep = await dispatch(svc, "deploy shop-api 1.5.0")
    assert rep.final.status == "succeeded", rep.final.summary
    verify = rep.final.steps[-1]
    assert (verify.name, verify.status) == ("Verify", "not_checked")
    assert verify.summary == "not checked: PROMETHEUS_URL is not set"
    assert "no analysis configured" not in verify.summary
    assert rep.final.summary == "1 not checked: Verify: analysis (PROMETHEUS_URL is not set)"
    assert mrkdwn(messages.execution_headline(rep.final)) == (
        "❔ `deploy shop-api 1.5.0` in *staging*: done, not checked: Verify")
    assert messages.step_line(verify) == "❔ Verify: not checked: PROMETHEUS_URL is not set"
    record = svc.store.get_execution(rep.final.execution_id)
    assert record is not None and record.status == "succeeded"
    assert [(s.name, s.status) for s in record.steps][-1] == ("Verify", "not_checked")
    assert record.summary.endswith("; 1 not checked: Verify: analysis (PROMETHEUS_URL is not set)")


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
    assert [(s.name, s.status) for s in rep.final.steps] == [
        ("Plan", "succeeded"),
        ("Pre-checks", "succeeded"),
        ("Back up", "skipped"),
        ("Apply", "skipped"),
        ("Roll out", "skipped"),
        ("Verify", "not_checked"),  # the plan says the deploy would go unverified
    ]
    assert rep.final.steps[5].summary == "not checked: PROMETHEUS_URL is not set"
    assert rep.final.summary == ("Dry run: nothing was changed. 1 not checked: Verify: "
                                 "analysis (PROMETHEUS_URL is not set)")
    assert [(b.label, b.command) for b in rep.final.buttons] == [
        ("Run it", "deploy shop-api 1.5.0")
    ]
    sim.wait_idle()
    assert sim.snapshot() == before



async def test_deploy_dry_run_shows_what_will_be_verified(
    tmp_path: Path, kubeconfig: Path, db_url: str, sim: Any
) -> None:
    """The dry run renders the analysis queries without asking Prometheus (nothing listens
    at this URL): the plan shows what the deploy will be judged by."""
    analysis = {
        "interval_seconds": 1,
        "count": 3,
        "metrics": [
            {"name": "error-ratio", "success": "result < 0.01", "unit": "ratio",
             "query": 'sum(rate(errors{namespace="{{ namespace }}",app="{{ app }}"}[2m]))'},
            {"name": "p99-latency", "success": "result < 0.3", "unit": "s",
             "query": 'max(latency{app="{{ app }}"})'},
        ],
    }
    before = sim.snapshot()
    with deploy_services(tmp_path, kubeconfig, db_url, analysis=analysis,
                         prometheus_url="http://127.0.0.1:9") as services:
        rep = await dispatch(services, "deploy shop-api 1.5.0 --dry-run")
    assert rep.final.status == "succeeded", rep.final.summary
    verify = next(s for s in rep.final.steps if s.name == "Verify")
    assert verify.status == "succeeded"
    assert verify.summary == "would verify 2 metrics over 3 checks, 1 s apart"
    assert dict(verify.fields) == {"error-ratio": "needs result < 0.01",
                                   "p99-latency": "needs result < 0.3"}
    assert verify.output == (
        'error-ratio: sum(rate(errors{namespace="shop-staging",app="shop-api"}[2m]))\n'
        'p99-latency: max(latency{app="shop-api"})'
    )
    assert not verify.attachments
    sim.wait_idle()
    assert sim.snapshot() == before

async def test_noop_deploy_refused(svc: Services, sim: Any) -> None:
    """A deploy of the tag that already runs is a refusal before anything starts: not a failed
    execution with a skipped automatic rollback."""
    before = sim.snapshot()
    rep = await dispatch(svc, "deploy shop-api 1.4.0")
    refusal = ("shop-api already runs registry.example.com/shop/api:1.4.0 in staging; "
               "nothing to deploy")
    outcome = rep.outcome  # type: ignore[attr-defined]
    assert outcome.status == "refused" and outcome.execution_id == rep.final.execution_id
    assert rep.final.status == "refused" and rep.final.summary == refusal
    assert [(s.name, s.status) for s in rep.final.steps] == [
        ("Plan", "refused"), ("Pre-checks", "pending"), ("Back up", "pending"),
        ("Apply", "pending"), ("Roll out", "pending"), ("Verify", "pending")]
    assert rep.final.buttons == []  # no Diagnose, no Re-run of a no-op
    record = svc.store.get_execution(outcome.execution_id)
    assert record is not None and (record.status, record.summary) == ("refused", refusal)
    assert [(s.name, s.status) for s in record.steps] == [("Plan", "refused")]
    audit = [r for r in svc.store.export_audit() if r["execution_id"] == outcome.execution_id]
    assert [(r["outcome"], r["details"]["detail"]) for r in audit] == [
        ("started", ""), ("refused", refusal)]
    sim.wait_idle()
    assert sim.snapshot() == before
    assert svc.store.get_lock("staging/shop-api") is None

    # `opsbot run` prints the refusal and exits 1.
    printed: list[str] = []
    outcome = await run_command(svc, "deploy shop-api 1.4.0", "alice", printed.append)
    assert exit_code(outcome) == 1
    assert printed[-1] == f"🛑 `deploy shop-api 1.4.0` in staging: refused\n  {refusal}"
    assert any(line.startswith(f"  🛑 Plan: {refusal}") for line in printed)


async def test_noop_deploy_in_an_approval_environment_is_refused_at_once(svc: Services,
                                                                         sim: Any) -> None:
    """No approval request is opened for a plan that refuses; the refusal is audited."""
    rep = await dispatch(svc, "deploy shop-api 1.4.0 --env prod")
    outcome = rep.outcome  # type: ignore[attr-defined]
    assert outcome.status == "refused" and outcome.request_id is None
    assert not rep.views
    [notice] = rep.notices
    assert notice.kind == "refused"
    assert notice.text == ("shop-api already runs registry.example.com/shop/api:1.4.0 in prod; "
                           "nothing to deploy")
    assert svc.store.pending_requests() == []
    [record] = svc.store.export_audit()
    assert (record["outcome"], record["environment"], record["details"]["detail"]) == (
        "refused", "prod", notice.text)


async def test_invalid_image_reference(svc: Services, sim: Any) -> None:
    rep = await dispatch(svc, "deploy shop-api 'bad image!'")
    assert rep.outcome.status == "usage"  # type: ignore[attr-defined]
    assert "is not an image reference or tag" in rep.notices[0].text


async def test_image_from_another_repository_refused(svc: Services, sim: Any) -> None:
    before = sim.snapshot()
    rep = await dispatch(svc, "deploy shop-api evil.example.com/miner:1.0")
    assert rep.final.status == "refused"
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
    assert [b.label for b in rep.final.buttons] == ["Diagnose", "Re-run"]


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
    assert [r["outcome"] for r in records] == ["started", "failed"]
    final = records[-1]
    # The audit record states why (the failed rollout) and the revision the deploy went
    # back to; the Reason shown on the rollback step is the same failure.
    rollout = next(s for s in rep.final.steps if s.name == "Roll out")
    assert rollout.summary.startswith("rollout failed: not done after 2s")
    revert = rep.final.steps[-1]
    assert revert.status == "succeeded"
    # ... and that it was rolled back, in words.
    assert final["details"]["detail"] == (
        f"Roll out failed: {rollout.summary}; then Roll back automatically: {revert.summary}")
    assert revert.summary.startswith(
        "rolled back automatically: rolled shop-api back to revision 3")
    assert rep.final.summary == final["details"]["detail"]
    # Which revision each change made: the failed rollout's 4, the automatic rollback's 5.
    assert final["details"]["made"] == [
        {"step": "rollout", "kind": "Deployment", "name": "shop-api", "revision": "4"},
        {"step": "revert", "kind": "Deployment", "name": "shop-api", "revision": "5",
         "on_failure": True},
    ]
    assert dict(revert.fields)["Reason"] == f"Roll out: {rollout.summary}"


async def test_progress_deadline_exceeded_rolls_back(
    tmp_path: Path, kubeconfig: Path, db_url: str, sim: Any
) -> None:
    sim.script_never_ready("shop-staging", "shop-web")
    with deploy_services(tmp_path, kubeconfig, db_url, timeout_seconds=30) as services:
        started = time.monotonic()
        task = asyncio.create_task(dispatch(services, "deploy shop-web 2.2.0"))
        await asyncio.sleep(2)
        sim.advance(700)  # past progressDeadlineSeconds (600)
        rep = await asyncio.wait_for(task, 60)
        records = [
            r for r in services.store.export_audit() if r["execution_id"] == rep.final.execution_id
        ]
    assert time.monotonic() - started < 25, "waited for the timeout, not the deadline"
    assert rep.final.status == "failed"
    rollout = next(s for s in rep.final.steps if s.name == "Roll out")
    assert rollout.status == "failed"
    assert rollout.summary.startswith("rollout failed: progress deadline exceeded (")
    revert = rep.final.steps[-1]
    assert revert.name == "Roll back automatically" and revert.status == "succeeded", revert
    assert dict(revert.fields)["Reason"].startswith("Roll out: rollout failed: progress deadline")
    assert "rolled shop-web back to revision 1" in revert.summary
    web = sim.get(WEB)
    assert web["spec"]["template"]["spec"]["containers"][0]["image"].endswith("web:2.1.0")
    assert records[-1]["details"]["detail"].startswith(
        "Roll out failed: rollout failed: progress deadline exceeded"
    )
    assert [(m["step"], m["revision"]) for m in records[-1]["details"]["made"]] == [
        ("rollout", "2"), ("revert", "3")]


async def test_lock_released_after_failed_deploy(
    tmp_path: Path, kubeconfig: Path, db_url: str, sim: Any
) -> None:
    sim.script_image_pull_error("api:1.6.0")
    with deploy_services(tmp_path, kubeconfig, db_url, timeout_seconds=2) as services:
        failed = await dispatch(services, "deploy shop-api 1.6.0")
        assert failed.final.status == "failed"
        assert services.store.get_lock("staging/shop-api") is None
        again = await dispatch(services, "deploy shop-api 1.5.0")
    assert again.final.status == "succeeded", again.final.summary
    assert _image(sim) == "registry.example.com/shop/api:1.5.0"


async def test_lock_released_when_a_step_raises(svc: Services, sim: Any) -> None:
    fault = sim.faults.inject("PATCH", "/deployments/shop-api$", status=403, times=None,
                              message="patch forbidden by the test")
    failed = await dispatch(svc, "deploy shop-api 1.5.0")
    assert failed.final.status == "failed"
    apply = next(s for s in failed.final.steps if s.name == "Apply")
    assert apply.status == "failed" and "forbidden" in apply.summary
    assert svc.store.get_lock("staging/shop-api") is None
    fault.cancel()
    again = await dispatch(svc, "deploy shop-api 1.5.0")
    assert again.final.status == "succeeded", again.final.summary


async def test_concurrent_mutating_command_refused_naming_holder(
    tmp_path: Path, kubeconfig: Path, db_url: str, sim: Any
) -> None:
    sim.script_image_pull_error("web:2.9.0")  # the first deploy stays in Roll out
    with deploy_services(tmp_path, kubeconfig, db_url, timeout_seconds=6) as services:
        first = RecordingReporter()
        trigger = Trigger(source="console", actor="U0ALICE", text="deploy shop-web 2.9.0")
        task = asyncio.create_task(services.dispatcher.dispatch(trigger, first))
        for _ in range(200):
            if first.views and first.views[-1].steps[4].status == "running":
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the first deploy never reached Roll out")
        holder = first.views[-1].execution_id
        before = sim.get(WEB)["spec"]
        second = await asyncio.wait_for(dispatch(services, "deploy shop-web 2.2.0", user="bob"), 10)
        assert not task.done(), "the first deploy should still hold the lock"
        outcome = await asyncio.wait_for(task, 60)
        after = await dispatch(services, "deploy shop-web 2.2.0", user="bob")
    assert second.outcome.status == "refused"  # type: ignore[attr-defined]
    assert not second.views  # refused before it ran: no execution message
    text = second.notices[0].text
    assert (
        f"shop-web in `staging` is busy: alice is running `deploy shop-web 2.9.0` "
        f"(execution `{holder}`) since "
    ) in text
    assert before["template"]["spec"]["containers"][0]["image"].endswith("web:2.9.0")
    assert outcome.status == "failed"  # its rollout never finished; rolled back
    assert first.final.steps[-1].status == "succeeded"
    # Once the holder ended, the same command runs.
    assert after.final.status == "succeeded", after.final.summary
    assert sim.get(WEB)["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":2.2.0")
