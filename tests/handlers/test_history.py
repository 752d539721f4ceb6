"""`history` of Argo Rollouts (their ReplicaSets' rollout revisions) and StatefulSets (their
ControllerRevisions), with who deployed each from the audit log, and what `rollback` of a
StatefulSet refuses. Argo CD apps: test_argocd_commands."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.config import load_settings
from bot.registry import Registry
from bot.services import Services
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
    assert rep.final.status == "failed"
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
    for text, why in (("rollback shop-db --to 9", "is not in its history (known revisions: 1, 2)"),
                      ("rollback shop-db --to 2", "already runs the template of revision 2; "
                                                  "skipped rollback")):
        rep = await dispatch(svc, text)
        assert rep.final.status == "failed"
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
