"""Rollback with kubectl `rollout undo` semantics, history, and target locks."""

from __future__ import annotations

import logging
import re
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


def _state(sim: Any) -> tuple[str, str]:
    dep = sim.get(API)
    return (
        dep["spec"]["template"]["spec"]["containers"][0]["image"].rsplit(":", 1)[1],
        dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
    )


async def test_rollback_to_previous_revision(svc: Services, sim: Any) -> None:
    rep = await dispatch(svc, "rollback shop-api")
    assert rep.final.status == "succeeded", rep.final.summary
    plan = dict(rep.final.steps[0].fields)
    assert plan["Revision"] == "3 → 2 (as new revision)"
    assert plan["Image (api)"].endswith("api:1.4.0 → registry.example.com/shop/api:1.3.0")
    sim.wait_idle()
    assert _state(sim) == ("1.3.0", "4")
    # The JSON patch kept the Deployment's own revision bookkeeping and no pod-template-hash.
    dep = sim.get(API)
    assert "pod-template-hash" not in dep["spec"]["template"]["metadata"]["labels"]



async def test_rollback_patch_follows_kubectl_annotation_rules(
    svc: Services, sim: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One JSON patch replaces the template (without pod-template-hash) and the annotations:
    the target ReplicaSet's, except kubectl's annotationsToSkip, which keep the Deployment's."""
    apps = svc.kube.for_context(None).apps
    [rs2] = [
        rs for rs in apps.list_namespaced_replica_set("shop-staging", label_selector="app=shop-api")
        .items if rs.metadata.annotations["deployment.kubernetes.io/revision"] == "2"
    ]
    apps.patch_namespaced_replica_set(rs2.metadata.name, "shop-staging", {"metadata": {
        "annotations": {
            "example.com/team": "payments",
            "kubernetes.io/change-cause": "deploy 1.3.0 by bob",
            "kubectl.kubernetes.io/last-applied-configuration": '{"from": "replicaset"}',
            "deployment.kubernetes.io/revision-history": "7",
        }}})
    apps.patch_namespaced_deployment("shop-api", "shop-staging", {"metadata": {"annotations": {
        "kubectl.kubernetes.io/last-applied-configuration": '{"from": "deployment"}',
        "example.com/only-on-the-deployment": "dropped",
    }}})
    sim.wait_idle()
    patches: list[Any] = []
    real_patch = apps.patch_namespaced_deployment

    def spy(name: str, namespace: str, body: Any, **kwargs: Any) -> Any:
        patches.append(body)
        return real_patch(name, namespace, body, **kwargs)

    monkeypatch.setattr(apps, "patch_namespaced_deployment", spy)

    rep = await dispatch(svc, "rollback shop-api")
    assert rep.final.status == "succeeded", rep.final.summary

    [patch] = patches
    assert [(op["op"], op["path"]) for op in patch] == [
        ("replace", "/spec/template"), ("replace", "/metadata/annotations")
    ]
    template, annotations = patch[0]["value"], patch[1]["value"]
    assert "pod-template-hash" not in template["metadata"]["labels"]
    assert template["metadata"]["labels"]["app"] == "shop-api"
    assert template["spec"]["containers"][0]["image"] == "registry.example.com/shop/api:1.3.0"
    assert annotations == {
        # The Deployment's own bookkeeping, not revision 2's ...
        "deployment.kubernetes.io/revision": "3",
        "kubectl.kubernetes.io/last-applied-configuration": '{"from": "deployment"}',
        # ... and everything else from the ReplicaSet; desired/max-replicas and
        # revision-history are skipped, the Deployment-only annotation is replaced away.
        "example.com/team": "payments",
        "kubernetes.io/change-cause": "deploy 1.3.0 by bob",
    }
    sim.wait_idle()
    dep = sim.get(API)
    assert dep["metadata"]["annotations"]["example.com/team"] == "payments"
    assert dep["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] == (
        '{"from": "deployment"}'
    )
    assert "example.com/only-on-the-deployment" not in dep["metadata"]["annotations"]
    assert "deployment.kubernetes.io/revision-history" not in dep["metadata"]["annotations"]
    assert "pod-template-hash" not in dep["spec"]["template"]["metadata"]["labels"]
    assert _state(sim) == ("1.3.0", "4")

async def test_rollback_to_named_revision(svc: Services, sim: Any) -> None:
    rep = await dispatch(svc, "rollback shop-api --to 1")
    assert rep.final.status == "succeeded", rep.final.summary
    sim.wait_idle()
    assert _state(sim) == ("1.2.0", "4")


async def test_rollback_unknown_revision(svc: Services, sim: Any) -> None:
    before = sim.snapshot()
    rep = await dispatch(svc, "rollback shop-api --to 9")
    assert rep.final.status == "failed"
    assert (
        "revision 9 of shop-api is not in its history (known revisions: 1, 2, 3)"
        in rep.final.steps[0].summary
    )
    assert sim.snapshot() == before


async def test_rollback_to_current_template_is_refused(svc: Services, sim: Any) -> None:
    before = sim.snapshot()
    rep = await dispatch(svc, "rollback shop-api --to 3")
    assert rep.final.status == "refused"  # nothing to do: a refusal, not a failed rollback
    assert "already runs the template of revision 3; skipped rollback" in rep.final.steps[0].summary
    assert [s.name for s in rep.final.steps if s.on_failure] == []  # no Diagnose
    assert sim.snapshot() == before


async def test_rollback_paused_deployment_refused(svc: Services, sim: Any) -> None:
    svc.kube.for_context(None).apps.patch_namespaced_deployment(
        "shop-api", "shop-staging", {"spec": {"paused": True}}
    )
    sim.wait_idle()
    before = sim.snapshot()
    rep = await dispatch(svc, "rollback shop-api")
    assert rep.final.status == "refused"
    assert "the Deployment is paused; resume it first" in rep.final.steps[0].summary
    assert sim.snapshot() == before


async def test_rollback_dry_run_changes_nothing(svc: Services, sim: Any) -> None:
    before = sim.snapshot()
    rep = await dispatch(svc, "rollback shop-api --dry-run")
    assert rep.final.status == "succeeded"
    assert rep.final.steps[0].summary.startswith("would rollback shop-api")
    sim.wait_idle()
    assert sim.snapshot() == before


async def test_history_names_who_deployed(svc: Services) -> None:
    assert (await dispatch(svc, "deploy shop-api 1.5.0")).final.status == "succeeded"
    rep = await dispatch(svc, "history shop-api", user="mallory")
    step = rep.final.steps[0]
    assert step.summary == "shop-api in staging: 4 revisions, current 4"
    fields = dict(step.fields)
    assert fields["Revision 4"].startswith("(current) registry.example.com/shop/api:1.5.0")
    assert "alice: deploy shop-api 1.5.0" in fields["Revision 4"]
    assert fields["Revision 3"].startswith("registry.example.com/shop/api:1.4.0")
    assert "not deployed through opsbot" in fields["Revision 3"]
    assert step.output is None  # four revisions fit in the message


def hold_lock(svc: Services, actor: str, *, ttl_seconds: float) -> str:
    """Another execution (a deploy of shop-api by `actor`) holds the staging/shop-api lock."""
    holder = svc.store.create_execution(
        runbook="deploy", source="slack", actor=actor, command="deploy shop-api 1.5.0",
        environment="staging", target="shop-api", params={}, dry_run=False,
    )
    svc.store.acquire_lock("staging/shop-api", execution_id=holder, actor=actor,
                           ttl_seconds=ttl_seconds)
    return holder


async def test_locked_target_refused_naming_holder(svc: Services, sim: Any) -> None:
    holder = hold_lock(svc, "U0BOB", ttl_seconds=300)
    before = sim.snapshot()
    rep = await dispatch(svc, "scale shop-api 4")
    assert rep.outcome.status == "refused"  # type: ignore[attr-defined]
    text = rep.notices[0].text
    assert "shop-api in `staging` is busy: bob is running `deploy shop-api 1.5.0`" in text
    assert holder in text and "since" in text
    assert sim.snapshot() == before
    # Another app is not affected; a dry run is never blocked.
    assert (await dispatch(svc, "scale shop-web 3")).final.status == "succeeded"
    assert (await dispatch(svc, "scale shop-api 4 --dry-run")).final.status == "succeeded"


async def test_unlock_by_admin_then_command_runs(svc: Services) -> None:
    hold_lock(svc, "U0ALICE", ttl_seconds=300)
    denied = await dispatch(svc, "unlock shop-api", user="alice")
    assert denied.outcome.status == "denied"  # type: ignore[attr-defined]
    rep = await dispatch(svc, "unlock shop-api", user="bob")
    assert rep.final.steps[0].summary.startswith("removed the lock alice held on shop-api")
    audit = [r for r in svc.store.export_audit() if r["details"].get("runbook") == "unlock"]
    assert audit and audit[-1]["actor"] == "U0BOB"
    assert (await dispatch(svc, "scale shop-api 4")).final.status == "succeeded"


def unlock_logs(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records
            if r.name == "opsbot.handler.opsbot.unlock"]


async def test_unlock_of_a_free_target_says_so_in_the_log_too(
    svc: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="opsbot.handler")
    rep = await dispatch(svc, "unlock shop-api", user="bob")
    assert rep.final.steps[0].summary == "shop-api in `staging` was not locked; nothing to do"
    # It used to log "WARNING lock on staging/shop-api removed by U0BOB" all the same.
    assert unlock_logs(caplog) == [("INFO", "unlock of staging/shop-api by U0BOB: it was not "
                                            "locked")]


async def test_unlock_logs_the_lease_it_removed(svc: Services,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="opsbot.handler")
    holder = hold_lock(svc, "U0ALICE", ttl_seconds=300)
    rep = await dispatch(svc, "unlock shop-api", user="bob")
    assert rep.final.steps[0].summary.startswith("removed the lock alice held on shop-api")
    assert unlock_logs(caplog) == [("WARNING", f"lock on staging/shop-api held by U0ALICE "
                                               f"(execution {holder}) removed by U0BOB")]


async def test_unlock_dry_run_says_whether_there_is_a_lock(svc: Services) -> None:
    free = await dispatch(svc, "unlock shop-api --dry-run", user="bob")
    assert free.final.steps[0].summary == "shop-api in `staging` is not locked; nothing to do"
    holder = hold_lock(svc, "U0ALICE", ttl_seconds=300)
    held = await dispatch(svc, "unlock shop-api --dry-run", user="bob")
    assert held.final.steps[0].summary == (f"would remove the lock alice holds on shop-api in "
                                           f"`staging` (execution `{holder}`)")
    assert svc.store.get_lock("staging/shop-api") is not None  # a dry run changes nothing


async def test_lock_released_after_execution(svc: Services) -> None:
    assert (await dispatch(svc, "scale shop-api 4")).final.status == "succeeded"
    assert svc.store.get_lock("staging/shop-api") is None


async def test_expired_lease_is_taken_over(svc: Services) -> None:
    hold_lock(svc, "U0BOB", ttl_seconds=0.01)
    import asyncio

    await asyncio.sleep(0.05)
    assert (await dispatch(svc, "scale shop-api 4")).final.status == "succeeded"


async def test_locks_lists_who_holds_what_since_when(svc: Services) -> None:
    empty = await dispatch(svc, "locks", user="mallory")  # read-only: any role may look
    assert empty.final.status == "succeeded"
    assert empty.final.steps[0].summary == \
        "No target is locked: nothing is changing an app right now."
    holder = hold_lock(svc, "U0BOB", ttl_seconds=300)
    rep = await dispatch(svc, "locks", user="alice")
    step = rep.final.steps[0]
    assert step.summary == "1 target is locked."
    [(target, held)] = step.fields
    assert target == "shop-api in staging"
    assert re.fullmatch(rf"🔒 bob running `deploy shop-api 1\.5\.0` \(execution `{holder}`\) "
                        rf"since \d\d:\d\d UTC", held), held
