"""Deploys verified against the real Prometheus (scraping a test exporter whose error rate the
test controls), and a pre-check against the real Alertmanager."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.handlers.deploy_support import deploy_services, dispatch
from tests.support.prometheus import error_ratio_query, p99_query

pytest_plugins = ["tests.support.fixtures_prometheus"]

API = "/apis/apps/v1/namespaces/shop-staging/deployments/shop-api"
ANALYSIS = {
    "interval_seconds": 1,
    "count": 3,
    "failure_limit": 0,
    "metrics": [
        {"name": "error-ratio", "query": error_ratio_query(), "success": "result < 0.01",
         "unit": "ratio"},
        {"name": "p99-latency", "query": p99_query(), "success": "result < 0.3", "unit": "s"},
    ],
}


def _image(sim: Any) -> str:
    return sim.get(API)["spec"]["template"]["spec"]["containers"][0]["image"]  # type: ignore[no-any-return]


async def test_deploy_verified_with_graph(tmp_path: Path, kubeconfig: Path, db_url: str,
                                          sim: Any, prometheus: Any) -> None:
    prometheus.exporter.set(app="shop-api", error_ratio=0.001, p99_seconds=0.08)
    prometheus.settle("shop-api")
    with deploy_services(tmp_path, kubeconfig, db_url, analysis=ANALYSIS,
                         prometheus_url=prometheus.url) as services:
        rep = await dispatch(services, "deploy shop-api 1.5.0")
    assert rep.final.status == "succeeded", rep.final.summary
    verify = next(s for s in rep.final.steps if s.name == "Verify")
    assert verify.summary.startswith("analysis passed")
    [graph] = verify.attachments
    assert graph.content.startswith(b"\x89PNG") and len(graph.content) > 5000
    assert _image(sim) == "registry.example.com/shop/api:1.5.0"


async def test_failing_analysis_rolls_back(tmp_path: Path, kubeconfig: Path, db_url: str,
                                           sim: Any, prometheus: Any) -> None:
    prometheus.exporter.set(app="shop-api", error_ratio=0.25, p99_seconds=0.08)
    prometheus.settle("shop-api")
    with deploy_services(tmp_path, kubeconfig, db_url, analysis=ANALYSIS,
                         prometheus_url=prometheus.url) as services:
        rep = await dispatch(services, "deploy shop-api 1.5.0")
        audit = [r for r in services.store.export_audit()
                 if r["execution_id"] == rep.final.execution_id]
    prometheus.exporter.set(app="shop-api", error_ratio=0.0)
    assert rep.final.status == "failed"
    verify = next(s for s in rep.final.steps if s.name == "Verify")
    assert verify.status == "failed" and "error-ratio" in verify.summary
    revert = rep.final.steps[-1]
    assert revert.name == "Roll back automatically" and revert.status == "succeeded"
    assert dict(revert.fields)["Reason"].startswith("Verify: analysis failed")
    assert _image(sim) == "registry.example.com/shop/api:1.4.0"
    # The audit record states the reason (the failed analysis) and the revision it went back to.
    assert audit[-1]["outcome"] == "failed"
    assert audit[-1]["details"]["detail"] == (
        f"Verify failed: {verify.summary}; then Roll back automatically: {revert.summary}")
    assert verify.summary.startswith("analysis failed: error-ratio ")
    assert [(m["step"], m["revision"]) for m in audit[-1]["details"]["made"]] == [
        ("rollout", "4"), ("revert", "5")]


async def test_no_auto_rollback_when_disabled(tmp_path: Path, kubeconfig: Path, db_url: str,
                                              sim: Any, prometheus: Any) -> None:
    prometheus.exporter.set(app="shop-web", error_ratio=0.5, p99_seconds=0.08)
    prometheus.settle("shop-web")

    with deploy_services(tmp_path, kubeconfig, db_url, analysis=ANALYSIS,
                         prometheus_url=prometheus.url) as services:
        env = services.settings.environments["staging"]
        off = env.model_copy(update={"deploy": env.deploy.model_copy(
            update={"auto_rollback": False})})
        services.settings.environments["staging"] = off
        rep = await dispatch(services, "deploy shop-web 2.2.0")
    assert rep.final.status == "failed"
    assert rep.final.steps[-1].name == "Roll back automatically"
    assert rep.final.steps[-1].status == "skipped"
    web = sim.get("/apis/apps/v1/namespaces/shop-staging/deployments/shop-web")
    assert web["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":2.2.0")


async def test_critical_alert_blocks_deploy(tmp_path: Path, kubeconfig: Path, db_url: str,
                                            sim: Any, alertmanager: Any) -> None:
    alertmanager.push({"alertname": "ShopApiBurningErrorBudget", "severity": "critical",
                       "namespace": "shop-staging", "deployment": "shop-api"},
                      {"summary": "5xx above 5%"})
    before = sim.snapshot()
    with deploy_services(tmp_path, kubeconfig, db_url,
                         alertmanager_url=alertmanager.url) as services:
        rep = await dispatch(services, "deploy shop-api 1.5.0")
    assert rep.final.status == "failed"
    checks = rep.final.steps[1]
    assert checks.name == "Pre-checks" and "ShopApiBurningErrorBudget" in checks.summary
    assert sim.snapshot() == before
