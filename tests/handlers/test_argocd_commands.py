"""Argo CD apps end to end through the dispatcher: `deploy` syncs and turns Healthy, a Degraded
deploy is rolled back by the runbook's on_failure, `rollback` under auto-sync is refused with
the way out, `--disable-autosync` rolls back and leaves auto-sync off, and `history` lists
Argo CD's history ids with who deployed each from the audit log.

The stand-in Argo CD writes the simulated cluster's Deployment when it syncs, as Argo CD would,
so the Deployment's ReplicaSet revisions run ahead of Argo CD's ids: `history` must not mix
the two (the bug it once had)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.services import Services
from bot.store import AuditEntry
from tests.handlers.deploy_support import dispatch
from tests.handlers.test_argocd_strategy import services_with
from tests.support.argocd_standin import TOKEN, ArgoCDStandIn

APP = "shop-api-staging"
REPO = "registry.example.com/shop/api"
DEPLOYMENT = "/apis/apps/v1/namespaces/shop-staging/deployments/shop-api"


@pytest.fixture
def argocd(argocd_server: ArgoCDStandIn) -> ArgoCDStandIn:
    argocd_server.reset()
    argocd_server.add_app(APP, history=("1.2.0", "1.3.0", "1.4.0"), image=REPO)
    return argocd_server


@pytest.fixture
def svc(argocd: ArgoCDStandIn, sim: Any, kubeconfig: Path, tmp_path: Path,
        db_url: str) -> Iterator[Services]:
    apps = {"shop-api": {"deploy": {"strategy": "argocd", "timeout_seconds": 30}}}
    built = services_with(tmp_path, db_url, apps, {
        "KUBECONFIG": str(kubeconfig), "ARGOCD_URL": argocd.url, "ARGOCD_TOKEN": TOKEN})
    apps_api = built.kube.for_context(None).apps

    def synced(name: str, revision: str) -> None:  # Argo CD applies the chart's new image
        body = {"spec": {"template": {"spec": {"containers": [
            {"name": "api", "image": f"{REPO}:{revision}"}]}}}}
        apps_api.patch_namespaced_deployment("shop-api", "shop-staging", body)

    argocd.on_sync = synced
    try:
        yield built
    finally:
        argocd.on_sync = None
        built.close()


def history_ids(argocd: ArgoCDStandIn) -> list[tuple[int, str]]:
    return [(h["id"], h["revision"]) for h in argocd.app(APP)["status"]["history"]]


def steps(rep: Any) -> dict[str, Any]:
    return {step.name: step for step in rep.final.steps}


async def test_deploy_syncs_and_turns_healthy(svc: Services, argocd: ArgoCDStandIn,
                                              sim: Any) -> None:
    rep = await dispatch(svc, "deploy shop-api 1.5.0")
    assert rep.final.status == "succeeded", rep.final.summary
    by_name = steps(rep)
    assert by_name["Plan"].summary == "will deploy shop-api: sync revision 1.4.0 → 1.5.0"
    assert by_name["Apply"].summary == f"Argo CD is syncing {APP} to 1.5.0"
    assert by_name["Roll out"].summary == (
        f"rolled out: {APP} runs 1.5.0: Healthy, OutOfSync (the app tracks `1.4.0` in git)")
    assert not any(step.on_failure for step in rep.final.steps)
    assert not argocd.calls_to("POST", "/rollback")
    assert [(c.body or {}).get("revision") for c in argocd.calls_to("POST", "/sync")] == ["1.5.0"]
    assert history_ids(argocd)[-1] == (3, "1.5.0")
    sim.wait_idle()
    image = sim.get(DEPLOYMENT)["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"{REPO}:1.5.0"  # Argo CD, not opsbot, wrote the workload
    record = [r for r in svc.store.export_audit() if r["details"].get("runbook") == "deploy"][-1]
    deployed_at = argocd.app(APP)["status"]["history"][-1]["deployedAt"]
    assert record["details"]["made"] == [{"step": "rollout", "kind": "Application", "name": APP,
                                          "revision": f"argocd:{APP}:3:{deployed_at}"}]


async def test_the_plan_names_the_application_where_argo_cd_keeps_it(svc: Services) -> None:
    # Argo CD keeps Applications in its own namespace; the app runs in shop-staging.
    rep = await dispatch(svc, "deploy shop-api 1.5.0 --dry-run")
    assert rep.final.status == "succeeded", rep.final.summary
    assert dict(steps(rep)["Plan"].fields)["Target"] == f"Application argocd/{APP} (argocd)"


async def test_degraded_deploy_is_rolled_back_automatically(svc: Services,
                                                            argocd: ArgoCDStandIn) -> None:
    argocd.script_degrade(APP, 'Deployment "shop-api" exceeded its progress deadline')
    rep = await dispatch(svc, "deploy shop-api 1.6.0")
    assert rep.final.status == "failed"
    by_name = steps(rep)
    assert by_name["Roll out"].status == "failed"
    assert by_name["Roll out"].summary == (
        f'rollout failed: {APP} is Degraded on 1.6.0: Deployment "shop-api" exceeded its '
        "progress deadline")
    revert = by_name["Roll back automatically"]
    assert revert.on_failure and revert.status == "succeeded", revert.summary
    assert revert.summary == (
        f"rolled back automatically: Argo CD is rolling {APP} back to 1.4.0 (#2); "
        f"{APP} runs 1.4.0: Synced, Healthy")
    assert [c.body for c in argocd.calls_to("POST", "/rollback")] == [
        {"id": 2, "prune": False, "dryRun": False}]
    assert history_ids(argocd)[-2:] == [(3, "1.6.0"), (4, "1.4.0")]
    assert argocd.app(APP)["status"]["health"]["status"] == "Healthy"

    fields = dict(steps(await dispatch(svc, "history shop-api", user="mallory"))["History"]
                  .fields)
    assert fields["History id 4"].startswith("(current) 1.4.0 ")
    assert "automatic rollback after alice: deploy shop-api 1.6.0" in fields["History id 4"]
    assert fields["History id 3"].startswith("1.6.0 ")
    assert "alice: deploy shop-api 1.6.0 (" in fields["History id 3"]
    assert fields["History id 3"].endswith(", failed)")


async def test_rollback_refused_under_auto_sync(svc: Services, argocd: ArgoCDStandIn) -> None:
    argocd.set_auto_sync(APP, True)
    rep = await dispatch(svc, "rollback shop-api")
    assert rep.final.status == "refused"
    plan = steps(rep)["Plan"]
    assert plan.status == "refused"
    assert plan.summary.startswith(
        "rollback cannot be initiated when auto-sync is enabled: Argo CD app "
        f"`{APP}` syncs itself from git and would undo a rollback.")
    assert "Run `rollback shop-api --env staging --disable-autosync`" in plan.summary
    assert "or revert the change in git" in plan.summary
    assert steps(rep)["Apply"].status == "pending"
    assert rep.final.summary == (f"{plan.summary} (add `--disable-autosync`, or revert the "
                                 "change in git)")
    assert not argocd.calls_to("POST") and not argocd.calls_to("PATCH")
    assert history_ids(argocd)[-1] == (2, "1.4.0")


async def test_rollback_disabling_auto_sync_leaves_it_off(svc: Services,
                                                          argocd: ArgoCDStandIn) -> None:
    argocd.set_auto_sync(APP, True)
    rep = await dispatch(svc, "rollback shop-api --disable-autosync", user="bob")
    assert rep.final.status == "succeeded", rep.final.summary
    by_name = steps(rep)
    plan = dict(by_name["Plan"].fields)
    assert plan["Sync revision"] == "1.4.0 (#2) → 1.3.0 (#1)"
    assert plan["Auto-sync"] == "on → off"
    assert by_name["Apply"].summary == (
        f"Argo CD is rolling {APP} back to 1.3.0 (#1); auto-sync is now OFF and stays off "
        "until someone re-enables it in Argo CD (it would sync straight back to git)")
    assert [(c.method, c.path.rsplit("/", 1)[-1]) for c in argocd.calls
            if c.method != "GET"] == [("PATCH", APP), ("POST", "rollback")]
    assert history_ids(argocd)[-1] == (3, "1.3.0")
    assert "automated" not in argocd.app(APP)["spec"]["syncPolicy"]
    # Still off afterwards: a plain rollback needs no flag now.
    again = await dispatch(svc, "rollback shop-api --to 2 --dry-run", user="bob")
    assert again.final.status == "succeeded", again.final.summary
    assert "Auto-sync" not in dict(steps(again)["Plan"].fields)


async def test_history_lists_argocd_ids_and_who_deployed(svc: Services,
                                                         argocd: ArgoCDStandIn,
                                                         sim: Any) -> None:
    assert (await dispatch(svc, "deploy shop-api 1.5.0")).final.status == "succeeded"
    sim.wait_idle()
    rolled = await dispatch(svc, "rollback shop-api --to 1", user="bob")
    assert rolled.final.status == "succeeded", rolled.final.summary
    sim.wait_idle()
    # The cluster's ReplicaSet revisions have run ahead of Argo CD's ids (seeded 1-3, then a
    # sync and a rollback): a match on bare numbers would credit the wrong deployment.
    dep = sim.get(DEPLOYMENT)
    assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "5"

    rep = await dispatch(svc, "history shop-api", user="mallory")
    assert rep.final.status == "succeeded"
    step = steps(rep)["History"]
    assert step.summary == (
        f"shop-api in staging: 5 deployments in the Argo CD history of `{APP}`, current #4 "
        "(1.3.0); `rollback shop-api --to ID` takes these ids")
    fields = dict(step.fields)
    assert list(fields) == [f"History id {n}" for n in (4, 3, 2, 1, 0)]
    assert fields["History id 4"].startswith(
        f"(current) 1.3.0 (charts/{APP} in git.example.com/shop/deploy) running {REPO}:1.3.0 ")
    assert fields["History id 4"].endswith(")") and "bob: rollback shop-api --to 1 (" in \
        fields["History id 4"]
    assert fields["History id 3"].startswith(f"1.5.0 (charts/{APP} in git.example.com")
    assert "alice: deploy shop-api 1.5.0 (" in fields["History id 3"]
    assert fields["History id 2"].startswith("1.4.0 ")
    assert fields["History id 2"].endswith("not deployed through opsbot (Argo CD: admin)")
    assert not any("alice" in v for k, v in fields.items() if k != "History id 3")
    assert step.output is None  # five fit in the message


async def test_history_ignores_audit_revisions_of_other_kinds(svc: Services,
                                                              argocd: ArgoCDStandIn) -> None:
    """A record from before the app moved to Argo CD claims ReplicaSet revision 2; Argo CD's
    deployment #2 must not be credited to it."""
    svc.store.audit(AuditEntry(
        actor="U0ALICE", source="console", command="deploy shop-api 1.4.0",
        environment="staging", target="shop-api", outcome="succeeded",
        execution_id=None, request_id=None,
        details={"runbook": "deploy", "revisions": {"rollout": "2"}},
    ))
    rep = await dispatch(svc, "history shop-api", user="mallory")
    fields = dict(steps(rep)["History"].fields)
    assert fields["History id 2"].startswith("(current) 1.4.0 ")
    assert "alice" not in fields["History id 2"]
    assert fields["History id 2"].endswith("not deployed through opsbot (Argo CD: admin)")


async def test_history_credits_changes_not_reads(svc: Services, argocd: ArgoCDStandIn,
                                                 sim: Any) -> None:
    """The issue's scenario on an Argo CD app: a status, a scale and a dry run after the
    deploy take no credit; the restart of the Deployment Argo CD manages makes no Argo CD
    deployment, so none is credited to it either."""
    assert (await dispatch(svc, "deploy shop-api 1.5.0")).final.status == "succeeded"
    sim.wait_idle()
    for text in ("status shop-api", "rollback shop-api --dry-run"):
        user = "mallory" if text.startswith("status") else "bob"
        assert (await dispatch(svc, text, user=user)).final.status == "succeeded", text
    assert (await dispatch(svc, "restart shop-api", user="carol")).final.status == "succeeded"
    sim.wait_idle()
    fields = dict(steps(await dispatch(svc, "history shop-api", user="mallory"))["History"]
                  .fields)
    assert fields["History id 3"].startswith("(current) 1.5.0 ")
    assert "alice: deploy shop-api 1.5.0 (" in fields["History id 3"]
    assert not any(who in str(fields) for who in ("mallory", "bob", "carol"))
    made = [r["details"].get("made") for r in svc.store.export_audit()
            if r["outcome"] == "succeeded"]
    deployed_at = argocd.app(APP)["status"]["history"][-1]["deployedAt"]
    assert [m for m in made if m] == [
        [{"step": "rollout", "kind": "Application", "name": APP,
          "revision": f"argocd:{APP}:3:{deployed_at}"}],
        # The restart's own revision is the Deployment's, named as such.
        [{"step": "0", "kind": "Deployment", "name": "shop-api", "revision": "5"}],
    ]
