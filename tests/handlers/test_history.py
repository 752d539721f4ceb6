"""`history` of Deployments, Argo Rollouts (their ReplicaSets' rollout revisions) and
StatefulSets (their ControllerRevisions), with who made each from the audit log: only the
change that made a revision is credited, never a read of it (issue: `mallory: status` showed as
the deployer), and what `rollback` of a StatefulSet refuses. Argo CD apps:
test_argocd_commands."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.config import load_settings
from bot.registry import Registry
from bot.services import Services
from bot.store import AuditEntry
from tests.conftest import DEMO_CONFIG
from tests.handlers.deploy_support import dispatch

NS = "shop-staging"
CANARY_REPO = "registry.example.com/shop/canary"
ROLLOUT = {
    "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
    "metadata": {"name": "shop-canary", "labels": {"app": "shop-canary"}},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "shop-canary"}},
        "template": {"metadata": {"labels": {"app": "shop-canary"}},
                     "spec": {"containers": [{"name": "app", "image": f"{CANARY_REPO}:1.0.0"}]}},
        "strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}},
    },
}
STATEFULSET = {
    "apiVersion": "apps/v1", "kind": "StatefulSet",
    "metadata": {"name": "shop-db", "labels": {"app": "shop-db"}},
    "spec": {
        "replicas": 2, "serviceName": "shop-db",
        "selector": {"matchLabels": {"app": "shop-db"}},
        "template": {"metadata": {"labels": {"app": "shop-db"}},
                     "spec": {"containers": [{"name": "db", "image": "postgres:16.4"}]}},
    },
}
APPS = {
    "shop-canary": {"container": "app", "image": CANARY_REPO, "environments": ["staging"],
                    "deploy": {"strategy": "argo-rollouts", "timeout_seconds": 30}},
    "shop-db": {"kind": "StatefulSet", "container": "db", "environments": ["staging"],
                "deploy": {"timeout_seconds": 30}},
}


@pytest.fixture
def svc(sim: Any, kubeconfig: Path, tmp_path: Path, db_url: str) -> Iterator[Services]:
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["apps"].update(APPS)
    # Not what these tests are about: pre-deploy health has its own tests.
    raw["environments"]["staging"]["deploy"] = {"prechecks": {"healthy": False}}
    config = tmp_path / "opsbot.yaml"
    config.write_text(yaml.safe_dump(raw))
    settings = load_settings(config, environ={"KUBECONFIG": str(kubeconfig),
                                              "OPSBOT_DATABASE_URL": db_url})
    built = Services.build(settings, registry=Registry.builtin())
    kube = built.kube.for_context(None)
    kube.custom.create_namespaced_custom_object("argoproj.io", "v1alpha1", NS, "rollouts",
                                                ROLLOUT)
    kube.apps.create_namespaced_stateful_set(NS, STATEFULSET)
    sim.wait_idle()
    try:
        yield built
    finally:
        built.close()


async def history(svc: Services, app: str) -> tuple[str, dict[str, str]]:
    rep = await dispatch(svc, f"history {app}", user="mallory")
    assert rep.final.status == "succeeded", rep.final.summary
    step = rep.final.steps[0]
    return step.summary, dict(step.fields)


async def test_rollout_history_lists_its_replica_sets(svc: Services, sim: Any) -> None:
    summary, fields = await history(svc, "shop-canary")
    assert summary == "shop-canary in staging: 1 revisions of Rollout `shop-canary`, current 1"
    assert fields["Revision 1"].startswith(f"(current, stable) {CANARY_REPO}:1.0.0 ")
    assert fields["Revision 1"].endswith("not deployed through opsbot")

    rep = await dispatch(svc, "deploy shop-canary 1.1.0")
    assert rep.final.status == "succeeded", rep.final.summary  # paused for a person
    sim.wait_idle()
    summary, fields = await history(svc, "shop-canary")
    assert summary == (
        "shop-canary in staging: 2 revisions of Rollout `shop-canary`, current 2, stable 1")
    assert list(fields) == ["Revision 2", "Revision 1"]
    assert fields["Revision 2"].startswith(f"(current, canary) {CANARY_REPO}:1.1.0 ")
    assert "alice: deploy shop-canary 1.1.0 (" in fields["Revision 2"]
    assert fields["Revision 1"].startswith(f"(stable) {CANARY_REPO}:1.0.0 ")

    assert (await dispatch(svc, "promote shop-canary", user="bob")).final.status == "succeeded"
    sim.wait_idle()
    # `rollback --to 1` takes the numbers history shows; the undo moves that set to revision 3.
    rep = await dispatch(svc, "rollback shop-canary --to 1", user="bob")
    assert rep.final.status == "succeeded", rep.final.summary
    sim.wait_idle()
    summary, fields = await history(svc, "shop-canary")
    assert list(fields) == ["Revision 3", "Revision 2"]
    assert fields["Revision 3"].startswith(f"(current, canary) {CANARY_REPO}:1.0.0 ")
    assert "bob: rollback shop-canary --to 1 (" in fields["Revision 3"]
    assert fields["Revision 2"].startswith(f"(stable) {CANARY_REPO}:1.1.0 ")
    assert "alice: deploy shop-canary 1.1.0 (" in fields["Revision 2"]


async def test_statefulset_history_and_rollback_refusal(svc: Services, sim: Any) -> None:
    rep = await dispatch(svc, "rollback shop-db")
    assert rep.final.status == "refused"
    assert rep.final.steps[0].summary == (
        "no rollout history found for shop-db: there is no previous revision")

    rep = await dispatch(svc, "deploy shop-db 16.5")
    assert rep.final.status == "succeeded", rep.final.summary
    sim.wait_idle()
    summary, fields = await history(svc, "shop-db")
    assert summary == (
        "shop-db in staging: 2 revisions of StatefulSet `shop-db`, current 2; "
        "`rollback shop-db --to N` takes these numbers")
    assert list(fields) == ["Revision 2", "Revision 1"]
    assert fields["Revision 2"].startswith("(current) postgres:16.5 ")
    assert "alice: deploy shop-db 16.5 (" in fields["Revision 2"]
    assert fields["Revision 1"].startswith("postgres:16.4 ")
    assert fields["Revision 1"].endswith("not deployed through opsbot")

    before = sim.snapshot()
    # `rollback --to` takes the numbers history shows.
    for text, status, why in (
            ("rollback shop-db --to 9", "failed", "is not in its history (known revisions: 1, 2)"),
            ("rollback shop-db --to 2", "refused", "already runs the template of revision 2; "
                                                   "skipped rollback")):
        rep = await dispatch(svc, text)
        assert rep.final.status == status
        assert rep.final.steps[0].summary.endswith(why)
    sim.wait_idle()
    assert sim.snapshot() == before

    # Deploying the old image again works, and history credits it.
    rep = await dispatch(svc, "deploy shop-db postgres:16.4")
    assert rep.final.status == "succeeded", rep.final.summary
    sim.wait_idle()
    _, fields = await history(svc, "shop-db")
    current = next(v for v in fields.values() if v.startswith("(current)"))
    assert current.startswith("(current) postgres:16.4 ")
    assert "alice: deploy shop-db postgres:16.4 (" in current


def current(fields: dict[str, str]) -> str:
    return next(v for v in fields.values() if v.startswith("(current"))


async def test_a_read_of_a_revision_never_takes_its_credit(svc: Services, sim: Any) -> None:
    """The issue's scenario on a Deployment, with the other verbs that make or move revisions:
    a restart makes one, a rollback moves one to the top, a scale and a dry run make none."""
    rep = await dispatch(svc, "deploy shop-api 1.5.0")
    assert rep.final.status == "succeeded", rep.final.summary
    sim.wait_idle()
    assert (await dispatch(svc, "status shop-api", user="mallory")).final.status == "succeeded"
    _, fields = await history(svc, "shop-api")
    assert current(fields).startswith("(current) registry.example.com/shop/api:1.5.0 ")
    assert "alice: deploy shop-api 1.5.0 (" in current(fields)
    assert "mallory" not in str(fields)

    for text in ("scale shop-api 4", "deploy shop-api 1.6.0 --dry-run",
                 "rollback shop-api --dry-run"):
        rep = await dispatch(svc, text, user="bob")
        assert rep.final.status == "succeeded", (text, rep.final.summary)
        sim.wait_idle()
    _, fields = await history(svc, "shop-api")
    assert "alice: deploy shop-api 1.5.0 (" in fields["Revision 4"]
    assert "bob" not in str(fields)

    rep = await dispatch(svc, "restart shop-api", user="carol")
    assert rep.final.status == "succeeded", rep.final.summary
    sim.wait_idle()
    await dispatch(svc, "status shop-api", user="mallory")
    _, fields = await history(svc, "shop-api")
    assert list(fields)[:2] == ["Revision 5", "Revision 4"]
    assert "carol: restart shop-api (" in fields["Revision 5"]
    assert "alice: deploy shop-api 1.5.0 (" in fields["Revision 4"]

    # kubectl rollout undo moves revision 4's ReplicaSet up to 6: its maker is the rollback.
    rep = await dispatch(svc, "rollback shop-api --to 4", user="bob")
    assert rep.final.status == "succeeded", rep.final.summary
    sim.wait_idle()
    await dispatch(svc, "status shop-api", user="mallory")
    _, fields = await history(svc, "shop-api")
    assert list(fields)[:2] == ["Revision 6", "Revision 5"]
    assert current(fields).startswith("(current) registry.example.com/shop/api:1.5.0 ")
    assert "bob: rollback shop-api --to 4 (" in fields["Revision 6"]
    assert "carol: restart shop-api (" in fields["Revision 5"]
    assert "mallory" not in str(fields)

    # The audit record says which execution made which revision of which object.
    record = [r for r in svc.store.export_audit()
              if r["details"].get("runbook") == "rollback" and r["outcome"] == "succeeded"][-1]
    assert record["execution_id"] == rep.final.execution_id
    assert record["details"]["made"] == [
        {"step": "rollout", "kind": "Deployment", "name": "shop-api", "revision": "6"}]
    reads = [r for r in svc.store.export_audit() if r["details"].get("runbook") in
             ("status", "scale", "history")]
    assert reads and not any("made" in r["details"] or "revisions" in r["details"]
                             for r in reads)


async def test_a_rollout_is_credited_to_its_deploy_not_to_a_status(svc: Services,
                                                                   sim: Any) -> None:
    rep = await dispatch(svc, "deploy shop-canary 1.1.0")
    assert rep.final.status == "succeeded", rep.final.summary  # paused for a person
    sim.wait_idle()
    assert (await dispatch(svc, "status shop-canary", user="mallory")).final.status == \
        "succeeded"
    # A Rollout restarts in place: no revision made, none credited.
    assert (await dispatch(svc, "promote shop-canary", user="bob")).final.status == "succeeded"
    sim.wait_idle()
    rep = await dispatch(svc, "restart shop-canary", user="carol")
    assert rep.final.status == "succeeded", rep.final.summary
    sim.wait_idle()
    await dispatch(svc, "status shop-canary", user="mallory")
    _, fields = await history(svc, "shop-canary")
    assert list(fields) == ["Revision 2", "Revision 1"]
    assert "alice: deploy shop-canary 1.1.0 (" in fields["Revision 2"]
    assert fields["Revision 1"].endswith("not deployed through opsbot")
    assert "mallory" not in str(fields) and "carol" not in str(fields)


async def test_a_statefulset_revision_is_credited_to_its_deploy_and_restart(svc: Services,
                                                                            sim: Any) -> None:
    rep = await dispatch(svc, "deploy shop-db 16.5")
    assert rep.final.status == "succeeded", rep.final.summary
    sim.wait_idle()
    await dispatch(svc, "status shop-db", user="mallory")
    _, fields = await history(svc, "shop-db")
    assert current(fields).startswith("(current) postgres:16.5 ")
    assert "alice: deploy shop-db 16.5 (" in current(fields)

    rep = await dispatch(svc, "restart shop-db", user="carol")
    assert rep.final.status == "succeeded", rep.final.summary
    sim.wait_idle()
    await dispatch(svc, "status shop-db", user="mallory")
    _, fields = await history(svc, "shop-db")
    assert list(fields) == ["Revision 3", "Revision 2", "Revision 1"]
    assert "carol: restart shop-db (" in fields["Revision 3"]
    assert "alice: deploy shop-db 16.5 (" in fields["Revision 2"]
    assert "mallory" not in str(fields)


async def test_old_audit_records_credit_only_changes(svc: Services, sim: Any) -> None:
    """Records written before `details.made` kept any step's revision, a status's too; history
    believes only the built-in change steps (`rollout`, `revert`) of those."""
    def old_record(actor: str, command: str, runbook: str, revisions: dict[str, str]) -> None:
        svc.store.audit(AuditEntry(
            actor=actor, source="console", command=command, environment="staging",
            target="shop-api", outcome="succeeded", execution_id=None, request_id=None,
            details={"runbook": runbook, "dry_run": False, "revisions": revisions}))

    old_record("U0ALICE", "rollback shop-api --to 2", "rollback", {"rollout": "3"})
    old_record("U0MALLORY", "status shop-api", "status", {"0": "3"})
    old_record("U0CAROL", "run remediate-crashloop-rollback app=shop-api",
               "remediate-crashloop-rollback", {"check": "3"})
    _, fields = await history(svc, "shop-api")
    assert current(fields).startswith("(current) registry.example.com/shop/api:1.4.0 ")
    assert "alice: rollback shop-api --to 2 (" in current(fields)
    assert "mallory" not in str(fields) and "carol" not in str(fields)
