"""`deploy.prechecks` against the real Alertmanager and the simulated cluster."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.config import load_settings
from bot.registry import Registry
from bot.services import Services
from bot.trigger import Trigger
from tests.conftest import DEMO_CONFIG, RecordingReporter
from tests.handlers.test_rollouts_strategy import ARGS, CANARY_APP, ROLLOUT
from tests.support.prometheus import AlertmanagerServer

pytest_plugins = ["tests.support.fixtures_prometheus"]

RUNBOOK = """
name: precheck-test
description: Pre-checks of an app (test).
parameters:
  app: {type: app}
  alerts: {type: string, default: "config", choices: ["config", "on", "off"]}
command: {verb: precheck-test, args: [app]}
steps:
  - name: Pre-checks
    handler: deploy.prechecks
    with:
      no_critical_alerts: "{{ none if params.alerts == 'config' else params.alerts == 'on' }}"
"""
CRITICAL = {"alertname": "HighErrorRate", "severity": "critical", "namespace": "shop-staging"}

Build = Callable[..., Services]


@pytest.fixture
def build(kubeconfig: Path, tmp_path: Path) -> Iterator[Build]:
    built: list[Services] = []
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbooks" / "precheck-test.yaml").write_text(RUNBOOK)

    def _build(alertmanager_url: str | None, apps: dict[str, Any] | None = None,
               prometheus_url: str | None = None, prod: dict[str, Any] | None = None,
               **staging: Any) -> Services:
        raw = yaml.safe_load(DEMO_CONFIG.read_text())
        raw["apps"].update(apps or {})
        raw["roles"]["tester"] = {"users": ["U0ALICE"], "runbooks": ["*"],
                                  "environments": ["*"]}
        raw["runbook_dirs"] = [str(tmp_path / "runbooks")]
        raw["environments"]["staging"].update(staging)
        raw["environments"]["prod"].update(prod or {})
        config = tmp_path / f"opsbot{len(built)}.yaml"
        config.write_text(yaml.safe_dump(raw))
        environ = {"KUBECONFIG": str(kubeconfig),
                   "OPSBOT_DATABASE_URL": f"sqlite:///{tmp_path / f'db{len(built)}.sqlite'}"}
        if alertmanager_url:
            environ["ALERTMANAGER_URL"] = alertmanager_url
        if prometheus_url:
            environ["PROMETHEUS_URL"] = prometheus_url
        services = Services.build(load_settings(config, environ=environ),
                                  registry=Registry.builtin())
        built.append(services)
        return services

    yield _build
    for services in built:
        services.close()


async def run(services: Services, text: str) -> RecordingReporter:
    rep = RecordingReporter()
    await services.dispatcher.dispatch(Trigger(source="console", actor="U0ALICE", text=text), rep)
    return rep


@pytest.mark.parametrize("label", ["deployment", "service"])
async def test_critical_alert_for_the_app_refuses(
    alertmanager: AlertmanagerServer, build: Build, label: str
) -> None:
    since = datetime.now(UTC) - timedelta(minutes=5)
    alertmanager.push({**CRITICAL, label: "shop-api"}, {"summary": "5xx above 5%"},
                      starts_at=since)
    rep = await run(build(alertmanager.url), "precheck-test shop-api")
    assert rep.final.status == "failed"
    step = rep.final.steps[0]
    assert step.summary == (
        "critical alert firing for shop-api in staging: HighErrorRate; "
        "resolve it or silence it first"
    )
    fields = dict(step.fields)
    assert fields["No critical alerts"] == f"✗ HighErrorRate firing since {since:%H:%M} UTC"
    assert fields["Healthy"] == "✓ 3/3 ready"


async def test_alerts_elsewhere_or_resolved_do_not_refuse(
    alertmanager: AlertmanagerServer, build: Build
) -> None:
    alertmanager.push({**CRITICAL, "deployment": "shop-web"})  # another app
    alertmanager.push({**CRITICAL, "namespace": "shop-prod", "deployment": "shop-api"})
    alertmanager.push({**CRITICAL, "severity": "warning", "app": "shop-api"})
    resolved = {**CRITICAL, "alertname": "Resolved", "deployment": "shop-api"}
    alertmanager.push(resolved)
    alertmanager.resolve(resolved)
    rep = await run(build(alertmanager.url), "precheck-test shop-api")
    assert rep.final.status == "succeeded", rep.final.summary
    step = rep.final.steps[0]
    assert step.summary == (
        "pre-checks passed for shop-api in staging: no critical alerts, shop-api 3/3 ready"
    )
    assert dict(step.fields) == {"No critical alerts": "✓ none firing", "Healthy": "✓ 3/3 ready"}


async def test_unhealthy_workload_refuses(build: Build) -> None:
    rep = await run(build(None), "precheck-test shop-worker")
    assert rep.final.status == "failed"
    step = rep.final.steps[0]
    assert step.summary.startswith("shop-worker is not healthy (")
    assert step.summary.endswith("); let it recover or fix it first, then deploy")
    fields = dict(step.fields)
    assert fields["No critical alerts"] == "not checked: ALERTMANAGER_URL is not set"
    assert fields["Healthy"].startswith("✗ ")


async def test_never_ready_after_restart_refuses(build: Build, sim: Any) -> None:
    services = build(None)
    sim.script_never_ready("shop-staging", "shop-web")
    # Someone restarted shop-web, and its new pods never become ready.
    body = {"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": datetime.now(UTC).isoformat()}}}}}
    services.kube.for_context(None).apps.patch_namespaced_deployment(
        "shop-web", "shop-staging", body)
    sim.wait_idle()
    rep = await run(services, "precheck-test shop-web")
    assert rep.final.status == "failed"
    assert rep.final.steps[0].summary.startswith("shop-web is not healthy (")


async def test_checks_follow_environment_config_and_params(
    alertmanager: AlertmanagerServer, build: Build
) -> None:
    alertmanager.push({**CRITICAL, "deployment": "shop-worker"})
    services = build(alertmanager.url, deploy={"prechecks": {"healthy": False}})
    rep = await run(services, "precheck-test shop-worker")
    assert rep.final.status == "failed"
    assert dict(rep.final.steps[0].fields)["Healthy"] == "off for this environment"

    rep = await run(services, "precheck-test shop-worker --alerts off")
    assert rep.final.status == "succeeded"
    assert rep.final.steps[0].summary == "pre-checks are off for shop-worker in staging"

    rep = await run(build(None), "precheck-test shop-api")
    assert rep.final.steps[0].summary == (
        "pre-checks passed for shop-api in staging: shop-api 3/3 ready; "
        "1 not checked: critical alerts (ALERTMANAGER_URL is not set)"
    )


# -- Argo Rollouts apps: the Rollout is the workload; there is no Deployment of that name ------


def canary(build: Build, sim: Any) -> Services:
    services = build(None, apps={"shop-canary": CANARY_APP})
    services.kube.for_context(None).custom.create_namespaced_custom_object(*ARGS, ROLLOUT)
    sim.wait_idle()
    return services


async def test_healthy_rollout_passes(build: Build, sim: Any) -> None:
    rep = await run(canary(build, sim), "precheck-test shop-canary")
    assert rep.final.status == "succeeded", rep.final.summary
    assert rep.final.steps[0].summary == (
        "pre-checks passed for shop-canary in staging: Rollout shop-canary Healthy, "
        "4/4 available; 1 not checked: critical alerts (ALERTMANAGER_URL is not set)"
    )
    assert dict(rep.final.steps[0].fields)["Healthy"] == "✓ Healthy, 4/4 available"


async def test_canary_paused_mid_rollout_refuses(build: Build, sim: Any) -> None:
    services = canary(build, sim)
    body = {"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": "registry.example.com/shop/canary:1.1.0"}]}}}}
    services.kube.for_context(None).custom.patch_namespaced_custom_object(
        *ARGS, "shop-canary", body)
    sim.wait_idle()
    rep = await run(services, "precheck-test shop-canary")
    assert rep.final.status == "failed"
    assert rep.final.steps[0].summary == (
        "Rollout shop-canary is not healthy (a canary is paused at step 2/4 (canary weight "
        "25%): promote or abort it); let it recover or fix it first, then deploy"
    )


async def test_critical_alert_naming_the_rollout_refuses(
    alertmanager: AlertmanagerServer, build: Build, sim: Any
) -> None:
    # The Rollout's name differs from the app's; rules about Rollouts label it `rollout`.
    alertmanager.push({**CRITICAL, "rollout": "checkout-ro"})
    body = {**ROLLOUT, "metadata": {**ROLLOUT["metadata"], "name": "checkout-ro"}}
    services = build(alertmanager.url, apps={"shop-canary": {
        **CANARY_APP, "deploy": {**CANARY_APP["deploy"], "rollout": "checkout-ro"}}})
    services.kube.for_context(None).custom.create_namespaced_custom_object(*ARGS, body)
    sim.wait_idle()
    rep = await run(services, "precheck-test shop-canary")
    assert rep.final.status == "failed"
    assert rep.final.steps[0].summary == (
        "critical alert firing for shop-canary in staging: HighErrorRate; "
        "resolve it or silence it first"
    )
    assert dict(rep.final.steps[0].fields)["Healthy"] == "✓ Healthy, 4/4 available"


async def test_missing_rollout_is_named(build: Build) -> None:
    services = build(None, apps={"shop-canary": CANARY_APP})
    rep = await run(services, "precheck-test shop-canary")
    assert rep.final.status == "failed"
    assert rep.final.steps[0].summary == (
        "Rollout `shop-canary` does not exist in namespace `shop-staging` (staging)"
    )


# -- checks that cannot run: refuse or warn (environments.<env>.deploy.unchecked) ------------

async def test_an_environment_that_refuses_unchecked_refuses_before_anything_changes(
    build: Build, sim: Any,
) -> None:
    services = build(None, deploy={"unchecked": "refuse"})
    before = sim.get("/apis/apps/v1/namespaces/shop-staging/deployments/shop-api")
    rep = await run(services, "deploy shop-api 1.5.0")
    assert rep.final.status == "refused"
    assert rep.final.summary == (
        "not deploying shop-api to staging: 2 not checked: critical alerts (ALERTMANAGER_URL is "
        "not set); verification after the rollout (PROMETHEUS_URL is not set), and staging "
        "refuses deploys whose checks cannot run (set environments.staging.deploy.unchecked: "
        "warn to deploy with them unchecked)")
    assert [s.status for s in rep.final.steps][:2] == ["succeeded", "refused"]
    after = sim.get("/apis/apps/v1/namespaces/shop-staging/deployments/shop-api")
    assert after["spec"] == before["spec"]  # nothing applied


async def test_by_default_an_environment_that_requires_approval_refuses_unchecked(
    alertmanager: AlertmanagerServer, build: Build,
) -> None:
    prod = {"deploy": {}}  # the demo's prod warns; a prod as configured by default
    rep = await run(build(None, prod=prod), "precheck-test shop-api --env prod")
    assert rep.final.status == "refused"
    assert "critical alerts (ALERTMANAGER_URL is not set)" in rep.final.summary
    assert "prod refuses deploys whose checks cannot run" in rep.final.summary
    # Every check can run: nothing to refuse.
    services = build(alertmanager.url, prometheus_url="http://127.0.0.1:9", prod=prod)
    rep = await run(services, "precheck-test shop-api --env prod")
    assert rep.final.status == "succeeded", rep.final.summary


async def test_an_alertmanager_that_does_not_answer_is_not_checked_never_passed(
    build: Build,
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    rep = await run(build(url), "precheck-test shop-api")
    assert rep.final.status == "succeeded"
    step = rep.final.steps[0]
    assert step.status == "not_checked"
    assert dict(step.fields)["No critical alerts"].startswith("not checked: ")
    assert "1 not checked: critical alerts (Alertmanager did not answer: " in step.summary
    rep = await run(build(url, deploy={"unchecked": "refuse"}), "precheck-test shop-api")
    assert rep.final.status == "refused"
