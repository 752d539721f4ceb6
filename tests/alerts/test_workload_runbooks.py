"""The built-in runbooks for kube-prometheus workload alerts: routing from realistic (and hostile)
labels, diagnoses against the demo cluster (and the real Prometheus for container metrics), and
the remediations' dry runs and fact checks."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from bot.alerts.payload import AlertItem
from bot.alerts.routing import Route, alert_context, route
from bot.commands import Command
from bot.config import Settings, load_settings
from bot.dispatcher import Outcome
from bot.invocation import Invocation
from bot.registry import Registry
from bot.runbooks.loader import load_catalog
from bot.services import Services
from bot.trigger import Trigger
from handlers.incidents.workload_common import promql_string
from simcluster import SimCluster
from tests.conftest import DEMO_CONFIG, RecordingReporter
from tests.support.prometheus import PrometheusServer

pytest_plugins = ["tests.support.fixtures_prometheus"]

NS = "shop-staging"
POD = "shop-worker-7d9c8b6f4d-x2x7q"  # the shape the ReplicaSet controller gives pod names
GENERATOR = "http://prometheus.example/graph?g0.expr=up"
MiB = 1024 * 1024


# -- helpers ------------------------------------------------------------------------------------


def alert(name: str, **labels: str) -> AlertItem:
    """An alert as kube-prometheus sends it (Alertmanager webhook v4 item)."""
    full = {"alertname": name, "severity": "warning", "job": "kube-state-metrics", **labels}
    return AlertItem.model_validate({
        "status": "firing", "labels": full,
        "annotations": {"summary": f"{name} fired",
                        "runbook_url": f"https://runbooks.prometheus-operator.dev/{name}"},
        "startsAt": (datetime.now(UTC) - timedelta(minutes=20)).isoformat(),
        "generatorURL": GENERATOR,
        "fingerprint": hashlib.sha256(repr(sorted(full.items())).encode()).hexdigest()[:16],
    })


def routes_by_name(item: AlertItem, settings: Settings) -> dict[str, Route]:
    catalog = load_catalog([], Registry.builtin())
    return {r.runbook.name: r for r in route(item, catalog, settings)}


def step(rep: RecordingReporter, name: str) -> Any:
    return next(s for s in rep.final.steps if s.name == name)


def buttons(rep: RecordingReporter) -> dict[str, str]:
    return {b.label: b.command for b in rep.final.buttons}


async def run_alert(services: Services, item: AlertItem, runbook: str, *,
                    dry_run: bool | None = None) -> tuple[Outcome, RecordingReporter]:
    """Run the runbook the alert routes to as the alert processor does: shadow mode (unless
    `dry_run` says otherwise) makes it a dry run; the alert is in the templates."""
    matched = routes_by_name(item, services.settings)[runbook]
    assert matched.params is not None and matched.environment is not None, matched.problem
    dry = matched.mode == "shadow" if dry_run is None else dry_run
    words = " ".join(f"{k}={v}" for k, v in matched.params.items() if v is not None)
    text = f"run {runbook} {words} --env {matched.environment.name}" + (
        " --dry-run" if dry else "")
    command = Command(text=text, meta="run", runbook=matched.runbook,
                      env=matched.environment.name, dry_run=dry, reason=f"alert {item.name}")
    inv = Invocation(Trigger(source="alert", actor="alertmanager", text=text, via="alert"),
                     command, matched.runbook, matched.environment, matched.app,
                     dict(matched.params),
                     context={"alert": alert_context(item, services.settings)})
    rep = RecordingReporter()
    outcome = await services.dispatcher.execute(inv, rep)
    return outcome, rep


async def run_as(services: Services, text: str,
                 user: str = "bob") -> tuple[Outcome, RecordingReporter]:
    """A command typed by a person (bob is in sre-approvers, who may run every runbook)."""
    rep = RecordingReporter()
    trigger = Trigger(source="console", actor=services.settings.user_id(user), text=text)
    return await services.dispatcher.dispatch(trigger, rep), rep


def pods_of(core: client.CoreV1Api, app: str) -> list[Any]:
    return sorted(core.list_namespaced_pod(NS, label_selector=f"app={app}").items,
                  key=lambda p: p.metadata.name)


def build_services(sim: SimCluster, tmp_path: Path, name: str, *,
                   prometheus_url: str | None = None, runbook_dirs: list[str] | None = None
                   ) -> Services:
    environ = {"KUBECONFIG": sim.write_kubeconfig(str(tmp_path / f"{name}.kubeconfig")),
               "OPSBOT_DATABASE_URL": f"sqlite:///{tmp_path / f'{name}.db'}"}
    if prometheus_url:
        environ["PROMETHEUS_URL"] = prometheus_url
    settings = load_settings(DEMO_CONFIG, environ=environ)
    if runbook_dirs:
        settings = settings.model_copy(update={"runbook_dirs": runbook_dirs})
    return Services.build(settings, registry=Registry.builtin())


@pytest.fixture
def svc(sim: SimCluster, tmp_path: Path) -> Iterator[Services]:
    services = build_services(sim, tmp_path, "svc")
    yield services
    services.close()


@pytest.fixture
def kube(svc: Services) -> Any:
    return svc.kube.for_context(None)


@pytest.fixture
def core(kube: Any) -> client.CoreV1Api:
    return kube.core


def deploy_image(kube: Any, sim: SimCluster, app: str, container: str, image: str) -> str:
    """Someone deploys `image` behind opsbot's back; returns the new ReplicaSet's name."""
    body = {"spec": {"template": {"spec": {"containers": [{"name": container,
                                                           "image": image}]}}}}
    kube.apps.patch_namespaced_deployment(app, NS, body)
    sim.wait_idle()
    dep = kube.apps.read_namespaced_deployment(app, NS)
    revision = dep.metadata.annotations["deployment.kubernetes.io/revision"]
    sets = kube.apps.list_namespaced_replica_set(NS, label_selector=f"app={app}").items
    return str(next(rs.metadata.name for rs in sets
                    if rs.metadata.annotations["deployment.kubernetes.io/revision"] == revision))


# -- routing ------------------------------------------------------------------------------------


CASES = [
    ("KubePodCrashLooping", {"pod": POD, "container": "worker", "reason": "CrashLoopBackOff"},
     {"alert-crashloop": {"app": "shop-worker", "pod": POD, "container": "worker"},
      "remediate-crashloop-rollback": {"app": "shop-worker", "pod": POD,
                                       "container": "worker"}}),
    ("KubeContainerOOMKilled", {"pod": POD, "container": "worker"},
     {"alert-oom-killed": {"app": "shop-worker", "pod": POD, "container": "worker",
                           "window": "1h"}}),
    ("ContainerOOMKilled", {"pod": POD, "container": "worker"},
     {"alert-oom-killed": {"app": "shop-worker", "pod": POD, "container": "worker",
                           "window": "1h"}}),
    ("KubePodOOMKilled", {"pod": POD},
     {"alert-oom-killed": {"app": "shop-worker", "pod": POD, "container": None,
                           "window": "1h"}}),
    ("KubePodNotReady", {"pod": POD},
     {"alert-pod-not-ready": {"app": "shop-worker", "pod": POD},
      "remediate-restart-stuck-pod": {"app": "shop-worker", "pod": POD}}),
    ("KubeContainerWaiting", {"pod": POD, "container": "worker", "reason": "ImagePullBackOff"},
     {"alert-container-waiting": {"app": "shop-worker", "pod": POD, "container": "worker"}}),
    ("KubeContainerWaiting", {"pod": POD, "container": "worker", "reason": "ContainerCreating"},
     {"alert-container-waiting": {"app": "shop-worker", "pod": POD, "container": "worker"},
      "remediate-restart-stuck-pod": {"app": "shop-worker", "pod": POD}}),
    ("KubeDeploymentReplicasMismatch", {"deployment": "shop-api"},
     {"alert-deployment": {"app": "shop-api"}}),
    ("KubeDeploymentRolloutStuck", {"deployment": "shop-api"},
     {"alert-deployment": {"app": "shop-api"}}),
    ("KubeHpaMaxedOut", {"horizontalpodautoscaler": "shop-api"},
     {"alert-hpa-maxed-out": {"app": "shop-api", "hpa": "shop-api"}}),
    ("CPUThrottlingHigh", {"pod": "shop-api-5689f74d4b-q7x2m", "container": "api"},
     {"alert-cpu-throttling": {"app": "shop-api", "pod": "shop-api-5689f74d4b-q7x2m",
                               "container": "api", "window": "5m"},
      "remediate-scale-throttled": {"app": "shop-api", "pod": "shop-api-5689f74d4b-q7x2m",
                                    "container": "api"}}),
]


@pytest.mark.parametrize(("name", "labels", "expected"), CASES,
                         ids=[f"{c[0]}-{c[1].get('reason', '')}" for c in CASES])
def test_kube_prometheus_labels_route_with_typed_params(
    offline_settings: Settings, name: str, labels: dict[str, str],
    expected: dict[str, dict[str, Any]],
) -> None:
    found = routes_by_name(alert(name, namespace=NS, **labels), offline_settings)
    mine = {k: v for k, v in found.items() if k.startswith(("alert-", "remediate-"))}
    assert {k: v.params for k, v in mine.items()} == expected
    for runbook, matched in mine.items():
        assert matched.problem is None and matched.environment is not None
        assert matched.environment.name == "staging"
        assert matched.mode == ("shadow" if runbook.startswith("remediate-") else "active")
        assert matched.runbook.mutating == runbook.startswith("remediate-")


def test_remediation_guardrails(offline_settings: Settings) -> None:
    catalog = load_catalog([], Registry.builtin())
    guardrails = {
        name: [(t.cooldown, t.max_runs, t.window) for t in catalog.by_name(name).alerts]
        for name in ("remediate-crashloop-rollback", "remediate-restart-stuck-pod",
                     "remediate-scale-throttled")
    }
    assert guardrails == {
        "remediate-crashloop-rollback": [("6h", 1, "6h")],
        "remediate-restart-stuck-pod": [("24h", 1, "24h"), ("24h", 1, "24h")],
        "remediate-scale-throttled": [("30m", 2, "6h")],
    }
    for name in guardrails:
        assert catalog.by_name(name).mode == "shadow" and catalog.by_name(name).mutating


def test_suggestions_render_from_params(offline_settings: Settings) -> None:
    found = routes_by_name(alert("KubeDeploymentRolloutStuck", namespace=NS,
                                 deployment="shop-api"), offline_settings)
    [suggestion] = found["alert-deployment"].trigger.suggest
    assert (suggestion.label, suggestion.command) == (
        "Rollback", "rollback {{ params.app }} --env {{ env.name }}")
    mismatch = routes_by_name(alert("KubeDeploymentReplicasMismatch", namespace=NS,
                                    deployment="shop-api"), offline_settings)
    assert [s.label for s in mismatch["alert-deployment"].trigger.suggest] == ["Status"]


@pytest.mark.parametrize("labels", [
    {"pod": "{{ 7*7 }}", "container": "worker"},
    {"pod": "shop-worker-7d9c8b6f4d-x2x7q\n", "container": "worker"},
    {"pod": POD, "container": "{{ 7*7 }}"},
    {"pod": POD, "container": "worker", "namespace": "shop-staging\n"},
    {"pod": POD, "container": "worker", "namespace": "{{ 7*7 }}"},
])
def test_hostile_labels_route_with_a_problem_and_no_params(
    offline_settings: Settings, labels: dict[str, str]
) -> None:
    full = {"namespace": NS, **labels}
    for name in ("KubePodCrashLooping", "CPUThrottlingHigh", "KubePodNotReady"):
        found = routes_by_name(alert(name, **full), offline_settings)
        mine = {k: v for k, v in found.items() if k.startswith(("alert-", "remediate-"))}
        assert mine, name
        for matched in mine.values():
            if matched.params is not None:
                # Only a runbook that does not read the hostile label routes at all.
                assert "container" in labels and "{{" in labels["container"]
                assert "container" not in matched.runbook.parameters
                assert "49" not in repr(matched.params)
                continue
            assert matched.problem, (name, matched.runbook.name)
            assert "49" not in matched.problem


def test_hostile_hpa_label_is_data(offline_settings: Settings) -> None:
    item = alert("KubeHpaMaxedOut", namespace=NS, horizontalpodautoscaler="{{ 7*7 }}")
    [matched] = routes_by_name(item, offline_settings).values()
    assert matched.params is None and matched.problem is not None
    assert "49" not in matched.problem


def test_promql_strings_are_escaped() -> None:
    assert promql_string('shop"} or vector(1) #\\') == '"shop\\"} or vector(1) #\\\\"'
    assert promql_string("a\nb") == '"a\\nb"'


# -- crash loops --------------------------------------------------------------------------------


async def test_crashloop_of_the_demo_worker_suggests_restart(svc: Services,
                                                             core: client.CoreV1Api) -> None:
    [pod] = pods_of(core, "shop-worker")
    item = alert("KubePodCrashLooping", namespace=NS, pod=pod.metadata.name, container="worker")
    outcome, rep = await run_alert(svc, item, "alert-crashloop")
    assert outcome.status == "succeeded", rep.final.summary
    diag = step(rep, "Diagnose")
    fields = dict(diag.fields)
    assert fields["What"] == (f"worker in pod {pod.metadata.name} is crash-looping: 7 restarts, "
                              "last OOMKilled (exit 137)")
    assert fields["Likely cause"] == ("it runs out of memory: killed at its memory limit of "
                                      "256Mi")
    assert fields["Revision"] == "revision 1 is shop-worker's only one: there is nothing to " \
                                 "roll back to"
    assert fields["Suggested"] == ("Restart, not Rollback: revision 1 is shop-worker's only one: "
                                   "there is nothing to roll back to")
    assert "out of memory while processing batch 8812" in fields["Last log line"]
    assert fields["Prometheus graph"] == GENERATOR
    assert fields["Runbook"].endswith("/KubePodCrashLooping")
    assert "min ago" in fields["Since"]
    assert diag.output is not None and "PREVIOUS LOG" in diag.output
    assert buttons(rep) == {"Restart": "restart shop-worker --env staging",
                            "History": "history shop-worker --env staging"}


async def test_crashloop_by_hand(svc: Services) -> None:
    outcome, rep = await run_as(svc, "run alert-crashloop app=shop-worker --env staging")
    assert outcome.status == "succeeded", rep.notices or rep.final.summary
    fields = dict(step(rep, "Diagnose").fields)
    assert fields["What"].startswith("worker in pod shop-worker-")
    assert "Prometheus graph" not in fields  # no alert, no links


@pytest.fixture
def bad_release(sim: SimCluster, kube: Any) -> str:
    """shop-api 1.5.0 is deployed (revision 4) and its pods crash-loop from the start."""
    rs = deploy_image(kube, sim, "shop-api", "api", "registry.example.com/shop/api:1.5.0")
    sim.script_crashloop(NS, rs, "api", reason="Error", exit_code=1, restarts=4,
                         log="INFO api: starting\nERROR api: missing env PAYMENTS_URL\n",
                         over_minutes=10)
    sim.wait_idle()
    return rs


async def test_crashloop_that_began_with_the_latest_revision_suggests_rollback(
    svc: Services, core: client.CoreV1Api, bad_release: str
) -> None:
    crashing = [p for p in pods_of(core, "shop-api") if p.metadata.name.startswith(bad_release)]
    item = alert("KubePodCrashLooping", namespace=NS, pod=crashing[0].metadata.name,
                 container="api")
    outcome, rep = await run_alert(svc, item, "alert-crashloop")
    assert outcome.status == "succeeded", rep.final.summary
    diag = step(rep, "Diagnose")
    fields = dict(diag.fields)
    assert fields["Likely cause"] == ("revision 4 (registry.example.com/shop/api:1.5.0): the "
                                      "application exits with an error (exit 1); see its "
                                      "previous log")
    assert fields["Revision"].startswith("the crash loop began ")
    assert "after revision 4 (registry.example.com/shop/api:1.5.0) rolled out" in \
        fields["Revision"]
    assert fields["Suggested"].startswith("Rollback to revision 3")
    assert fields["Last log line"] == "ERROR api: missing env PAYMENTS_URL"
    assert buttons(rep)["Rollback"] == "rollback shop-api --env staging"
    assert "Restart" not in buttons(rep)


async def test_rollback_remediation_shadow_run_shows_the_plan_and_changes_nothing(
    svc: Services, sim: SimCluster, core: client.CoreV1Api, bad_release: str
) -> None:
    crashing = [p for p in pods_of(core, "shop-api") if p.metadata.name.startswith(bad_release)]
    item = alert("KubePodCrashLooping", namespace=NS, pod=crashing[0].metadata.name,
                 container="api")
    sim.wait_idle()
    before = sim.get(f"/apis/apps/v1/namespaces/{NS}/deployments/shop-api")
    outcome, rep = await run_alert(svc, item, "remediate-crashloop-rollback")  # shadow
    assert outcome.status == "succeeded", rep.final.summary
    assert rep.final.dry_run
    check = step(rep, "Check the facts")
    assert check.summary.startswith("would roll back shop-api to revision 3: the crash loop "
                                    "began ")
    plan = step(rep, "Plan")
    assert plan.status == "succeeded"
    assert plan.summary.startswith("would rollback shop-api: revision 4 → 3 (as new revision)")
    assert "registry.example.com/shop/api:1.5.0 → registry.example.com/shop/api:1.4.0" in \
        plan.summary
    assert [step(rep, n).status for n in ("Apply", "Roll out")] == ["skipped", "skipped"]
    sim.wait_idle()
    assert sim.get(f"/apis/apps/v1/namespaces/{NS}/deployments/shop-api") == before


async def test_rollback_remediation_acts_when_active(svc: Services, sim: SimCluster, kube: Any,
                                                     core: client.CoreV1Api,
                                                     bad_release: str) -> None:
    crashing = [p for p in pods_of(core, "shop-api") if p.metadata.name.startswith(bad_release)]
    item = alert("KubePodCrashLooping", namespace=NS, pod=crashing[0].metadata.name,
                 container="api")
    outcome, rep = await run_alert(svc, item, "remediate-crashloop-rollback", dry_run=False)
    assert outcome.status == "succeeded", rep.final.summary
    assert step(rep, "Check the facts").summary.startswith("rolling back shop-api to revision 3")
    assert step(rep, "Roll out").status == "succeeded"
    dep = kube.apps.read_namespaced_deployment("shop-api", NS)
    assert dep.spec.template.spec.containers[0].image == "registry.example.com/shop/api:1.4.0"
    assert dep.metadata.annotations["deployment.kubernetes.io/revision"] == "5"


async def test_rollback_remediation_leaves_a_crash_loop_the_release_did_not_cause(
    svc: Services, sim: SimCluster, core: client.CoreV1Api, kube: Any
) -> None:
    [pod] = pods_of(core, "shop-worker")
    item = alert("KubePodCrashLooping", namespace=NS, pod=pod.metadata.name, container="worker")
    outcome, rep = await run_alert(svc, item, "remediate-crashloop-rollback", dry_run=False)
    assert outcome.status == "succeeded", rep.final.summary
    check = step(rep, "Check the facts")
    assert check.summary == ("not rolling back shop-worker: revision 1 is shop-worker's only "
                             "one: there is nothing to roll back to")
    assert [step(rep, n).status for n in ("Plan", "Apply", "Roll out")] == ["skipped"] * 3
    dep = kube.apps.read_namespaced_deployment("shop-worker", NS)
    assert dep.metadata.annotations["deployment.kubernetes.io/revision"] == "1"


async def test_rollback_remediation_ignores_a_loop_that_began_long_after_the_rollout(
    svc: Services, sim: SimCluster, core: client.CoreV1Api
) -> None:
    # shop-api's revision 3 rolled out a day ago; it starts crashing now.
    sim.script_crashloop(NS, "shop-api", "api", reason="Error", exit_code=2, restarts=3)
    sim.wait_idle()
    pod = pods_of(core, "shop-api")[0]
    item = alert("KubePodCrashLooping", namespace=NS, pod=pod.metadata.name, container="api")
    outcome, rep = await run_alert(svc, item, "remediate-crashloop-rollback", dry_run=False)
    assert outcome.status == "succeeded", rep.final.summary
    summary = step(rep, "Check the facts").summary
    assert summary.startswith("not rolling back shop-api: the crash loop began ")
    assert summary.endswith("so not with it")
    assert step(rep, "Plan").status == "skipped"


# -- OOM kills ----------------------------------------------------------------------------------


async def test_oom_without_prometheus(svc: Services, core: client.CoreV1Api) -> None:
    [pod] = pods_of(core, "shop-worker")
    item = alert("KubeContainerOOMKilled", namespace=NS, pod=pod.metadata.name,
                 container="worker")
    outcome, rep = await run_alert(svc, item, "alert-oom-killed")
    assert outcome.status == "succeeded", rep.final.summary
    fields = dict(step(rep, "Diagnose").fields)
    assert fields["What"] == f"worker in pod {pod.metadata.name} was OOM-killed (7 restarts)"
    assert fields["Likely cause"] == "worker needs more memory than its limit 256Mi"
    assert fields["Memory"] == "limit 256Mi, request 128Mi"
    assert fields["Working set"] == "unknown: Prometheus is not configured (PROMETHEUS_URL)"
    assert fields["Suggested"].startswith("raise the memory limit to about 384Mi")
    assert buttons(rep) == {"Restart": "restart shop-worker --env staging"}


async def test_oom_with_the_working_set_from_prometheus(
    sim: SimCluster, tmp_path: Path, prometheus: PrometheusServer, core: client.CoreV1Api
) -> None:
    [pod] = pods_of(core, "shop-worker")
    prometheus.exporter.set_container(namespace=NS, pod=pod.metadata.name, container="worker",
                                      working_set_bytes=300 * MiB)
    prometheus.wait_for(
        f'container_memory_working_set_bytes{{pod="{pod.metadata.name}"}}',
        lambda v: v == 300 * MiB)
    services = build_services(sim, tmp_path, "prom", prometheus_url=prometheus.url)
    try:
        outcome, rep = await run_as(services, "run alert-oom-killed app=shop-worker --env staging")
    finally:
        services.close()
    assert outcome.status == "succeeded", rep.notices or rep.final.summary
    fields = dict(step(rep, "Diagnose").fields)
    assert fields["Peak working set (1h)"] == "300Mi = 117% of the limit"
    assert fields["Suggested"].startswith("raise the memory limit to about 450Mi (1.5x the peak)")


# -- pods not ready, waiting containers --------------------------------------------------------


@pytest.fixture
def stuck_pod(sim: SimCluster, core: client.CoreV1Api) -> str:
    """One shop-api pod replaced by a pod that never becomes ready (its readiness probe fails);
    the two others stay ready."""
    sim.script_never_ready(NS, "shop-api")
    core.delete_namespaced_pod(pods_of(core, "shop-api")[0].metadata.name, NS)
    sim.wait_idle()
    stuck = [p.metadata.name for p in pods_of(core, "shop-api")
             if not any(c.type == "Ready" and c.status == "True" for c in p.status.conditions)]
    assert len(stuck) == 1
    # Only this pod stays stuck: its replacement will become ready.
    sim.clear_scripts()
    sim.script_never_ready(NS, stuck[0])
    sim.wait_idle()
    return stuck[0]


async def test_pod_not_ready_names_the_failing_readiness_probe(svc: Services,
                                                               stuck_pod: str) -> None:
    item = alert("KubePodNotReady", namespace=NS, pod=stuck_pod)
    outcome, rep = await run_alert(svc, item, "alert-pod-not-ready")
    assert outcome.status == "succeeded", rep.final.summary
    fields = dict(step(rep, "Diagnose").fields)
    assert fields["What"] == f"pod {stuck_pod} of shop-api is not ready"
    assert fields["Likely cause"].startswith("readiness probe failing (")
    assert fields["Likely cause"].endswith(
        "Readiness probe failed: HTTP probe failed with statuscode: 503")
    assert "Ready=False (ContainersNotReady)" in fields["Conditions"]
    assert fields["Readiness probe"] == "HTTP GET /healthz on port 8080 every 10s"
    assert fields["Owner"].startswith("ReplicaSet shop-api-")
    assert fields["Ready pods"] == "2/3 of shop-api"
    assert fields["Deleting the pod"].startswith("may help")
    assert buttons(rep) == {"Restart stuck pod": f"run remediate-restart-stuck-pod app=shop-api "
                                                 f"pod={stuck_pod} --env staging"}


async def test_restart_stuck_pod_shadow_run_changes_nothing(svc: Services, sim: SimCluster,
                                                            core: client.CoreV1Api,
                                                            stuck_pod: str) -> None:
    item = alert("KubePodNotReady", namespace=NS, pod=stuck_pod)
    outcome, rep = await run_alert(svc, item, "remediate-restart-stuck-pod")
    assert outcome.status == "succeeded", rep.final.summary
    assert rep.final.dry_run
    assert step(rep, "Check the facts").summary.startswith(f"would delete pod {stuck_pod}: "
                                                           "not ready since ")
    delete = step(rep, "Delete the pod")
    assert delete.summary.startswith(f"would delete pod {stuck_pod} of shop-api; ReplicaSet "
                                     "shop-api-")
    assert delete.summary.endswith("creates a replacement while 2 other pod(s) stay ready")
    sim.wait_idle()
    assert stuck_pod in [p.metadata.name for p in pods_of(core, "shop-api")]


async def test_restart_stuck_pod_deletes_it_once_active(svc: Services, sim: SimCluster,
                                                        core: client.CoreV1Api,
                                                        stuck_pod: str) -> None:
    item = alert("KubePodNotReady", namespace=NS, pod=stuck_pod)
    outcome, rep = await run_alert(svc, item, "remediate-restart-stuck-pod", dry_run=False)
    assert outcome.status == "succeeded", rep.final.summary
    delete = step(rep, "Delete the pod")
    assert delete.summary.startswith(f"deleted pod {stuck_pod} of shop-api; replacement ")
    assert delete.summary.endswith(" is ready")
    sim.wait_idle()
    names = [p.metadata.name for p in pods_of(core, "shop-api")]
    assert stuck_pod not in names and len(names) == 3


async def test_restart_stuck_pod_never_takes_the_last_ready_pods(
    svc: Services, sim: SimCluster, core: client.CoreV1Api
) -> None:
    sim.script_never_ready(NS, "shop-web")
    core.delete_namespaced_pod(pods_of(core, "shop-web")[0].metadata.name, NS)
    sim.wait_idle()
    [stuck] = [p.metadata.name for p in pods_of(core, "shop-web")
               if not any(c.type == "Ready" and c.status == "True" for c in p.status.conditions)]
    item = alert("KubePodNotReady", namespace=NS, pod=stuck)
    outcome, rep = await run_alert(svc, item, "remediate-restart-stuck-pod", dry_run=False)
    assert outcome.status == "succeeded", rep.final.summary
    assert step(rep, "Check the facts").summary == (
        f"not deleting {stuck}: only 1 pod(s) of shop-web are ready; a stuck pod is deleted "
        "only while at least 2 are")
    assert step(rep, "Delete the pod").status == "skipped"
    assert stuck in [p.metadata.name for p in pods_of(core, "shop-web")]


async def test_restart_stuck_pod_leaves_a_ready_or_foreign_pod(svc: Services,
                                                              core: client.CoreV1Api) -> None:
    ready = pods_of(core, "shop-api")[0].metadata.name
    outcome, rep = await run_as(
        svc, f"run remediate-restart-stuck-pod app=shop-api pod={ready} --env staging")
    assert outcome.status == "succeeded", rep.notices or rep.final.summary
    assert step(rep, "Check the facts").summary == f"not deleting {ready}: pod {ready} is " \
                                                   "ready now"
    web = pods_of(core, "shop-web")[0].metadata.name
    outcome, rep = await run_as(
        svc, f"run remediate-restart-stuck-pod app=shop-api pod={web} --env staging")
    assert outcome.status == "succeeded"
    assert step(rep, "Check the facts").summary == f"not deleting {web}: pod {web} is ready now"
    assert len(pods_of(core, "shop-web")) == 2


DELETE_RUNBOOK = """
name: test-delete-pod
description: Delete a pod of an app (k8s.delete_pod without the fact check).
mutating: true
parameters:
  app: {type: app}
  pod: {type: string}
steps:
  - name: Delete
    handler: k8s.delete_pod
    with:
      pod: "{{ params.pod }}"
      wait_seconds: 5
"""


@pytest.fixture
def bare(sim: SimCluster, tmp_path: Path) -> Iterator[Services]:
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbooks" / "test-delete-pod.yaml").write_text(DELETE_RUNBOOK)
    services = build_services(sim, tmp_path, "bare",
                              runbook_dirs=[str(tmp_path / "runbooks")])
    yield services
    services.close()


async def test_delete_pod_handler_guards(bare: Services, sim: SimCluster,
                                         core: client.CoreV1Api) -> None:
    web = pods_of(core, "shop-web")[0].metadata.name
    _, rep = await run_as(bare, f"run test-delete-pod app=shop-api pod={web} --env staging")
    assert rep.final.status == "refused"
    assert f"pod {web} is not one of shop-api's pods to delete" in rep.final.steps[0].summary
    _, rep = await run_as(bare, "run test-delete-pod app=shop-api pod=Bad_Name --env staging")
    assert rep.final.status == "failed" and "not a valid pod name" in rep.final.steps[0].summary
    [worker] = pods_of(core, "shop-worker")
    _, rep = await run_as(bare, f"run test-delete-pod app=shop-worker pod={worker.metadata.name}"
                                " --env staging")
    assert rep.final.status == "refused"
    assert "has 0 ready pod(s) in staging" in rep.final.steps[0].summary
    api = pods_of(core, "shop-api")[0].metadata.name
    outcome, rep = await run_as(bare, f"run test-delete-pod app=shop-api pod={api} --env "
                                      "staging --dry-run")
    assert outcome.status == "succeeded"
    assert rep.final.steps[0].summary.startswith(f"would delete pod {api} of shop-api")
    assert api in [p.metadata.name for p in pods_of(core, "shop-api")]
    # A ready pod may go while two others stay ready.
    outcome, rep = await run_as(bare, f"run test-delete-pod app=shop-api pod={api} --env staging")
    assert outcome.status == "succeeded", rep.final.summary
    sim.wait_idle()
    assert api not in [p.metadata.name for p in pods_of(core, "shop-api")]


@pytest.fixture
def unpullable(sim: SimCluster, kube: Any) -> str:
    """shop-api 9.9.9 (revision 4) was deployed, but that tag does not exist."""
    sim.script_image_pull_error("api:9.9.9")
    return deploy_image(kube, sim, "shop-api", "api", "registry.example.com/shop/api:9.9.9")


async def test_container_waiting_on_a_missing_image_suggests_rollback(
    svc: Services, core: client.CoreV1Api, unpullable: str
) -> None:
    [pod] = [p for p in pods_of(core, "shop-api") if p.metadata.name.startswith(unpullable)]
    item = alert("KubeContainerWaiting", namespace=NS, pod=pod.metadata.name, container="api",
                 reason="ImagePullBackOff")
    assert "remediate-restart-stuck-pod" not in routes_by_name(item, svc.settings)
    outcome, rep = await run_alert(svc, item, "alert-container-waiting")
    assert outcome.status == "succeeded", rep.final.summary
    fields = dict(step(rep, "Diagnose").fields)
    assert fields["What"] == f"api in pod {pod.metadata.name} is waiting: ImagePullBackOff"
    assert fields["Likely cause"] == ("the image tag does not exist in the registry (a typo or "
                                      "an unpushed build)")
    assert fields["Image"] == "registry.example.com/shop/api:9.9.9"
    assert fields["Revision"] == "revision 4 (the latest); the one before is 3"
    assert fields["Deleting the pod"].startswith("no: a new pod would not do better")
    assert buttons(rep) == {"Rollback": "rollback shop-api --env staging"}


@pytest.mark.parametrize(("reason", "message", "cause"), [
    ("CreateContainerConfigError", 'secret "db-credentials" not found',
     "Secret db-credentials that the pod needs does not exist"),
    ("CreateContainerConfigError", 'configmap "shop-config" not found',
     "ConfigMap shop-config that the pod needs does not exist"),
    ("CreateContainerConfigError",
     "couldn't find key password in Secret shop-staging/db-credentials",
     "key password is missing from Secret db-credentials"),
    ("ErrImagePull", 'failed to pull: unauthorized: authentication required',
     "the registry refuses access: check the pod's imagePullSecrets"),
    ("InvalidImageName", 'couldn\'t parse image reference "Shop:api"',
     "the image reference is not valid"),
])
def test_waiting_reasons_map_to_causes(reason: str, message: str, cause: str) -> None:
    from handlers.pods import waiting_cause

    assert waiting_cause(reason, message) == cause


# -- Deployments --------------------------------------------------------------------------------


async def test_rollout_stuck_after_the_deadline(svc: Services, sim: SimCluster,
                                                unpullable: str) -> None:
    sim.advance(601)
    sim.wait_idle()
    item = alert("KubeDeploymentRolloutStuck", namespace=NS, deployment="shop-api")
    outcome, rep = await run_alert(svc, item, "alert-deployment")
    assert outcome.status == "succeeded", rep.final.summary
    diag = step(rep, "Diagnose")
    fields = dict(diag.fields)
    assert fields["What"] == "shop-api: rollout of revision 4 is stuck"
    assert fields["Likely cause"].startswith("revision 4 made no progress for 600s; 1 pod(s) not "
                                             "ready: api waiting (ImagePullBackOff): the image "
                                             "tag does not exist")
    assert fields["Condition Progressing"].startswith("False (ProgressDeadlineExceeded)")
    assert f"revision 4 (new): {unpullable} registry.example.com/shop/api:9.9.9 0/1 ready" in \
        fields["ReplicaSets"]
    assert "revision 3: " in fields["ReplicaSets"]
    assert fields["Suggested"] == "Rollback shop-api to revision 3"
    assert diag.output is not None and unpullable in diag.output
    assert buttons(rep) == {"Rollback": "rollback shop-api --env staging",
                            "Diagnose": "diag shop-api --env staging"}


async def test_replicas_mismatch_that_recovered(svc: Services) -> None:
    item = alert("KubeDeploymentReplicasMismatch", namespace=NS, deployment="shop-api")
    outcome, rep = await run_alert(svc, item, "alert-deployment")
    assert outcome.status == "succeeded", rep.final.summary
    fields = dict(step(rep, "Diagnose").fields)
    assert fields["What"] == "shop-api: 3/3 ready, 3 updated, 3 available"
    assert fields["Likely cause"] == "it has recovered: every replica is ready and updated"
    assert buttons(rep) == {"Diagnose": "diag shop-api --env staging"}


async def test_a_revision_annotation_in_other_digits_is_no_revision(svc: Services,
                                                                     kube: Any) -> None:
    # `"²".isdigit()` is true and int("²") raises: the diagnoses crashed on such an annotation.
    for app in ("shop-api", "shop-worker"):
        [rs, *_] = kube.apps.list_namespaced_replica_set(NS, label_selector=f"app={app}").items
        kube.apps.patch_namespaced_replica_set(rs.metadata.name, NS, {"metadata": {
            "annotations": {"deployment.kubernetes.io/revision": "²"}}})
    item = alert("KubeDeploymentReplicasMismatch", namespace=NS, deployment="shop-api")
    outcome, rep = await run_alert(svc, item, "alert-deployment")
    assert outcome.status == "succeeded", rep.final.summary
    outcome, rep = await run_as(svc, "run alert-crashloop app=shop-worker --env staging")
    assert outcome.status == "succeeded", rep.notices or rep.final.summary


# -- HPAs and CPU throttling --------------------------------------------------------------------


async def test_hpa_maxed_out(svc: Services, sim: SimCluster) -> None:
    sim.script_cpu_utilization(NS, "shop-api", 200)
    sim.wait_idle(timeout=20)
    item = alert("KubeHpaMaxedOut", namespace=NS, horizontalpodautoscaler="shop-api")
    outcome, rep = await run_alert(svc, item, "alert-hpa-maxed-out")
    assert outcome.status == "succeeded", rep.final.summary
    fields = dict(step(rep, "Diagnose").fields)
    assert fields["What"] == "HPA shop-api holds shop-api at its maximum: 10 of 10 replicas"
    assert fields["Likely cause"] == ("demand needs about 29 replicas at the current load but "
                                      "maxReplicas is 10")
    assert fields["Metrics"] == "cpu: 200% of requests (target 70%)"
    assert fields["Replicas"] == "10 current · 10 desired · 1..10 allowed"
    assert fields["Suggested"].startswith("raise maxReplicas to about 29 (and the app's "
                                          "configured max 10 in opsbot")
    assert "ago" in fields["Since"]


async def test_hpa_below_its_maximum(svc: Services) -> None:
    outcome, rep = await run_as(svc, "run alert-hpa-maxed-out app=shop-api --env staging")
    assert outcome.status == "succeeded", rep.notices or rep.final.summary
    fields = dict(step(rep, "Diagnose").fields)
    assert fields["What"] == "HPA shop-api is below its maximum now (3 of 10)"
    assert fields["Scaling active"].startswith("False (FailedGetResourceMetric)")


@pytest.fixture
def throttled(prometheus: PrometheusServer, core: client.CoreV1Api) -> tuple[str, str]:
    """The first shop-web pod's container is throttled 60% of its CFS periods."""
    pod = pods_of(core, "shop-web")[0].metadata.name
    prometheus.exporter.set_container(namespace=NS, pod=pod, container="web",
                                      throttled_ratio=0.6)
    sel = f'{{pod="{pod}"}}'
    query = (f"sum(increase(container_cpu_cfs_throttled_periods_total{sel}[5m])) / "
             f"sum(increase(container_cpu_cfs_periods_total{sel}[5m]))")
    prometheus.wait_for(query, lambda v: abs(v - 0.6) < 0.02)
    return pod, prometheus.url


async def test_cpu_throttling_measured_in_prometheus(sim: SimCluster, tmp_path: Path,
                                                     throttled: tuple[str, str]) -> None:
    pod, url = throttled
    services = build_services(sim, tmp_path, "prom", prometheus_url=url)
    try:
        item = alert("CPUThrottlingHigh", namespace=NS, pod=pod, container="web")
        outcome, rep = await run_alert(services, item, "alert-cpu-throttling")
    finally:
        services.close()
    assert outcome.status == "succeeded", rep.final.summary
    fields = dict(step(rep, "Diagnose").fields)
    assert fields["What"] == f"web in pod {pod} is CPU-throttled 60% of the time"
    assert fields["Likely cause"] == "web needs more CPU than its limit 200m"
    assert fields["Throttled (5m)"] == "60% of CFS periods"
    assert fields["Suggested"].startswith("Scale +1 (2 → 3 replicas, within 1..10; still "
                                          "throttled 60%)")
    assert buttons(rep) == {"Scale +1": "run remediate-scale-throttled app=shop-web --env "
                                        "staging"}


async def test_scale_throttled_shadow_then_active(sim: SimCluster, tmp_path: Path, kube: Any,
                                                  throttled: tuple[str, str]) -> None:
    pod, url = throttled
    services = build_services(sim, tmp_path, "prom", prometheus_url=url)
    item = alert("CPUThrottlingHigh", namespace=NS, pod=pod, container="web")
    try:
        outcome, rep = await run_alert(services, item, "remediate-scale-throttled")
        assert outcome.status == "succeeded", rep.final.summary
        assert rep.final.dry_run
        assert step(rep, "Check the facts").summary == (
            "would scale shop-web up by one: 2 → 3 replicas, within 1..10; still throttled 60%")
        assert step(rep, "Scale").summary == "would scale shop-web from 2 to 3 replicas"
        assert kube.apps.read_namespaced_deployment("shop-web", NS).spec.replicas == 2
        outcome, rep = await run_alert(services, item, "remediate-scale-throttled",
                                       dry_run=False)
    finally:
        services.close()
    assert outcome.status == "succeeded", rep.final.summary
    assert step(rep, "Scale").summary.startswith("scaled shop-web from 2 to 3 replicas")
    assert kube.apps.read_namespaced_deployment("shop-web", NS).spec.replicas == 3


async def test_scale_throttled_says_when_the_throttling_was_not_measured(
    sim: SimCluster, tmp_path: Path, core: client.CoreV1Api
) -> None:
    """Without PROMETHEUS_URL the check that the throttling still holds cannot run: the fact
    check is not checked (and says why), never passed; what to do about it is policy."""
    pod = pods_of(core, "shop-web")[0].metadata.name
    services = build_services(sim, tmp_path, "noprom")
    try:
        item = alert("CPUThrottlingHigh", namespace=NS, pod=pod, container="web")
        outcome, rep = await run_alert(services, item, "remediate-scale-throttled")
    finally:
        services.close()
    assert outcome.status == "succeeded", rep.final.summary
    check = step(rep, "Check the facts")
    assert check.status == "not_checked"
    assert check.summary == (
        "would scale shop-web up by one: 2 → 3 replicas, within 1..10; not checked: throttling "
        "still high (Prometheus is not configured (PROMETHEUS_URL))")
    assert rep.final.summary == (
        "Dry run: nothing was changed. 1 not checked: Check the facts: throttling still high "
        "(Prometheus is not configured (PROMETHEUS_URL))")


async def test_scale_throttled_refuses_at_the_max_and_under_an_active_hpa(
    svc: Services, sim: SimCluster, kube: Any
) -> None:
    kube.apps.patch_namespaced_deployment_scale("shop-web", NS, {"spec": {"replicas": 10}})
    sim.wait_idle(timeout=20)
    outcome, rep = await run_as(svc, "run remediate-scale-throttled app=shop-web --env staging")
    assert outcome.status == "succeeded", rep.notices or rep.final.summary
    assert step(rep, "Check the facts").summary == (
        "not scaling shop-web: shop-web already runs 10 replicas, the configured max in staging")
    assert step(rep, "Scale").status == "skipped"
    # shop-api's HPA computes replicas once metrics flow (75% is within its 10% tolerance).
    sim.script_cpu_utilization(NS, "shop-api", 75)
    sim.wait_idle()
    outcome, rep = await run_as(svc, "run remediate-scale-throttled app=shop-api --env staging")
    assert outcome.status == "succeeded"
    assert step(rep, "Check the facts").summary == (
        "not scaling shop-api: HPA shop-api manages the replicas and would undo a manual scale; "
        "tune its target or maxReplicas instead")
    assert kube.apps.read_namespaced_deployment("shop-api", NS).spec.replicas == 3


async def test_scale_throttled_stands_down_when_throttling_passed(
    sim: SimCluster, tmp_path: Path, prometheus: PrometheusServer, core: client.CoreV1Api
) -> None:
    pod = pods_of(core, "shop-web")[1].metadata.name
    prometheus.exporter.set_container(namespace=NS, pod=pod, container="web",
                                      throttled_ratio=0.02)
    prometheus.wait_for(f'count_over_time(container_cpu_cfs_periods_total{{pod="{pod}"}}[1m])',
                        lambda v: v >= 2)
    services = build_services(sim, tmp_path, "prom", prometheus_url=prometheus.url)
    try:
        item = alert("CPUThrottlingHigh", namespace=NS, pod=pod, container="web")
        outcome, rep = await run_alert(services, item, "remediate-scale-throttled",
                                       dry_run=False)
    finally:
        services.close()
    assert outcome.status == "succeeded", rep.final.summary
    assert step(rep, "Check the facts").summary == (
        "not scaling shop-web: throttling is down to 2%; one more replica is not needed now")
