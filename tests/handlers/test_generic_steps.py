"""The generic steps through the dispatcher, against real programs: `http.request` to an HTTP
server on 127.0.0.1, `prometheus.query` to the real Prometheus, `k8s.patch` on the simulated
cluster, `wait`, `notify` on the console; and their checks when runbooks load."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from bot.config import load_settings
from bot.console.reporter import ConsoleReporter
from bot.errors import RunbookError
from bot.registry import Registry
from bot.runbooks.loader import load_catalog
from bot.services import Services
from bot.trigger import Trigger
from tests.conftest import DEMO_CONFIG, dispatch
from tests.support.prometheus import PrometheusServer

pytest_plugins = ["tests.support.fixtures_prometheus"]

RUNBOOKS: dict[str, dict[str, Any]] = {
    "http-check": {
        "description": "GET a health endpoint and check its JSON",
        "parameters": {"url": {"type": "string"}},
        "command": {"verb": "http-check", "args": ["url"]},
        "steps": [{"id": "call", "name": "Call", "handler": "http.request",
                   "with": {"url": "{{ params.url }}",
                            "checks": ["json.status == 'ok'"]}}],
    },
    "http-post": {
        "description": "POST a templated JSON body with headers",
        "mutating": True,
        "parameters": {"url": {"type": "string"}, "note": {"type": "string"}},
        "command": {"verb": "http-post", "args": ["url", "note"]},
        "steps": [{"name": "Post", "handler": "http.request",
                   "with": {"method": "POST", "url": "{{ params.url }}",
                            "body": {"note": "{{ params.note }}", "env": "{{ env.name }}",
                                     "replicas": 3},
                            "headers": {"X-Team": "platform"},
                            "secret_headers": {"Authorization": "OPSBOT_TEST_HTTP_TOKEN"},
                            "expect_status": [201],
                            "checks": ["json.received.note == 'hello'"]}}],
    },
    "promql-check": {
        "description": "A PromQL check",
        "parameters": {"success": {"type": "string"}},
        "command": {"verb": "promql-check", "args": ["success"]},
        "steps": [{"id": "check", "name": "Check", "handler": "prometheus.query",
                   "with": {"query": "count(up)", "success": "{{ params.success }}"}}],
    },
    "patch-web": {
        "description": "Patch shop-web",
        "mutating": True,
        "parameters": {"replicas": {"type": "int"}},
        "command": {"verb": "patch-web", "args": ["replicas"]},
        "steps": [
            {"name": "Label", "handler": "k8s.patch",
             "with": {"kind": "Deployment", "name": "shop-web",
                      "patch": {"metadata": {"labels": {"team": "platform"}}}}},
            {"name": "Replicas", "handler": "k8s.patch",
             "with": {"kind": "Deployment", "name": "shop-web", "type": "json",
                      "patch": [{"op": "replace", "path": "/spec/replicas",
                                 "value": "{{ params.replicas }}"}]}},
        ],
    },
    "patch-service": {
        "description": "Patch a kind that is not allowed",
        "mutating": True,
        "command": {"verb": "patch-service"},
        "steps": [{"name": "Patch", "handler": "k8s.patch",
                   "with": {"kind": "Service", "name": "shop-web", "type": "merge",
                            "patch": {"metadata": {"labels": {"a": "b"}}}}}],
    },
    "pause-and-tell": {
        "description": "Wait, then tell a channel",
        "parameters": {"duration": {"type": "string", "default": "1s"}},
        "command": {"verb": "pause-and-tell"},
        "steps": [
            {"name": "Wait", "handler": "wait",
             "with": {"duration": "{{ params.duration }}", "reason": "let it settle"}},
            {"name": "Tell", "handler": "notify",
             "with": {"channel": "#platform", "text": "{{ env.name }}: settled <ok> & done"}},
        ],
    },
}


class _Api(BaseHTTPRequestHandler):
    seen: list[dict[str, Any]]

    def log_message(self, *_: Any) -> None:
        pass

    def _answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        port = self.server.server_address[1]
        routes: dict[str, Callable[[], None]] = {
            "/health": lambda: self._answer(200, {"status": "ok"}),
            "/sick": lambda: self._answer(200, {"status": "degraded"}),
            "/down": lambda: self._answer(503, {"status": "down"}),
            "/big": lambda: self._answer(200, b"x" * 5000),
            "/moved": lambda: self._answer(302, {}, {"Location": "/health"}),
            "/away": lambda: self._answer(
                302, {}, {"Location": f"http://localhost:{port}/health"}),
        }
        routes.get(self.path, lambda: self._answer(404, {}))()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        received = json.loads(self.rfile.read(length) or b"null")
        self.seen.append({"path": self.path, "headers": dict(self.headers), "body": received})
        self._answer(201, {"received": received})


@pytest.fixture
def api() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    handler = type("Api", (_Api,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


Build = Callable[..., Services]


@pytest.fixture
def build(tmp_path: Path, kubeconfig: Path) -> Iterator[Build]:
    built: list[Services] = []
    (tmp_path / "runbooks").mkdir()
    for name, body in RUNBOOKS.items():
        (tmp_path / "runbooks" / f"{name}.yaml").write_text(yaml.safe_dump({"name": name,
                                                                            **body}))
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["runbook_dirs"] = [str(tmp_path / "runbooks")]
    raw["roles"]["tester"] = {"users": ["U0ALICE"], "runbooks": ["*"], "environments": ["*"]}
    raw["http"] = {"allowed_hosts": ["127.0.0.1"], "max_response_bytes": 4096}
    config_file = tmp_path / "opsbot.yaml"
    config_file.write_text(yaml.safe_dump(raw))

    def _build(prometheus_url: str | None = None) -> Services:
        environ = {"OPSBOT_DATABASE_URL": f"sqlite:///{tmp_path / f'db{len(built)}.sqlite'}",
                   "KUBECONFIG": str(kubeconfig)}
        if prometheus_url:
            environ["PROMETHEUS_URL"] = prometheus_url
        services = Services.build(load_settings(config_file, environ=environ),
                                  registry=Registry.builtin())
        built.append(services)
        return services

    yield _build
    for services in built:
        services.close()


# http.request ------------------------------------------------------------------------------

async def test_http_request_checks_the_json_answer(build: Build, api: tuple[str, Any]) -> None:
    url, _ = api
    outcome, rep = await dispatch(build(), f"http-check {url}/health")
    assert outcome.status == "succeeded", rep.final.steps[0].summary
    assert rep.final.steps[0].summary == f"GET `{url}/health` answered 200; every check passed"
    outcome, rep = await dispatch(build(), f"http-check {url}/sick")
    assert outcome.status == "failed"
    assert "check `json.status == 'ok'` does not hold" in rep.final.steps[0].summary
    outcome, rep = await dispatch(build(), f"http-check {url}/down")
    assert outcome.status == "failed"
    assert "status 503 is not one expected (200, 201, 202, 203, 204, …)" in \
        rep.final.steps[0].summary


async def test_http_request_posts_a_templated_body_and_hides_header_values(
        build: Build, api: tuple[str, list[dict[str, Any]]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    url, seen = api
    monkeypatch.setenv("OPSBOT_TEST_HTTP_TOKEN", "Bearer s3cret-value")
    services = build()
    outcome, rep = await dispatch(services, f"http-post {url}/hooks hello --dry-run")
    assert outcome.status == "succeeded" and seen == []  # a dry run sends nothing
    step = rep.final.steps[0]
    assert step.summary == f"would send POST `{url}/hooks`"
    assert dict(step.fields)["Headers"] == "X-Team, Authorization"
    assert dict(step.fields)["Body"] == '{"env":"staging","note":"hello","replicas":3}'
    outcome, rep = await dispatch(services, f"http-post {url}/hooks hello")
    assert outcome.status == "succeeded", rep.final.steps[0].summary
    assert seen[0]["body"] == {"note": "hello", "env": "staging", "replicas": 3}
    assert seen[0]["headers"]["Authorization"] == "Bearer s3cret-value"
    assert seen[0]["headers"]["X-Team"] == "platform"
    shown = json.dumps([vars(v) for v in rep.views], default=str)
    assert "s3cret" not in shown


async def test_http_request_refuses_hosts_off_the_allowlist(
        build: Build, api: tuple[str, Any]) -> None:
    url, _ = api
    port = url.rsplit(":", 1)[1]
    outcome, rep = await dispatch(build(), f"http-check http://localhost:{port}/health")
    assert outcome.status == "refused"
    assert "host `localhost` is not on the configured `http.allowed_hosts`; nothing was sent" \
        in rep.final.steps[0].summary
    # A redirect within the allowlist is followed; to another host it is not.
    outcome, rep = await dispatch(build(), f"http-check {url}/moved")
    assert outcome.status == "succeeded", rep.final.steps[0].summary
    outcome, rep = await dispatch(build(), f"http-check {url}/away")
    assert outcome.status == "failed"
    assert ("the answer redirects to `localhost`, which is not on `http.allowed_hosts`; "
            "not followed") in rep.final.steps[0].summary


async def test_http_request_bounds_the_answer(build: Build, api: tuple[str, Any]) -> None:
    url, _ = api
    outcome, rep = await dispatch(build(), f"http-check {url}/big")
    assert outcome.status == "failed"
    assert "larger than 4096 bytes" in rep.final.steps[0].summary


# prometheus.query ----------------------------------------------------------------------------

async def test_prometheus_query_against_the_real_prometheus(
        build: Build, prometheus: PrometheusServer) -> None:
    services = build(prometheus.url)
    outcome, rep = await dispatch(services, 'promql-check "result >= 1"')
    assert outcome.status == "succeeded", rep.final.steps[0].summary
    assert rep.final.steps[0].summary.endswith(": `result >= 1` holds")
    outcome, rep = await dispatch(services, 'promql-check "result > 100000"')
    assert outcome.status == "failed"
    assert rep.final.steps[0].summary.endswith(": `result > 100000` does not hold")
    outcome, rep = await dispatch(services, 'promql-check "result >= 1" --dry-run')
    assert outcome.status == "succeeded"  # it only reads: a dry run measures as well
    assert rep.final.steps[0].summary.startswith("now ")
    outcome, rep = await dispatch(services, 'promql-check "result > 100000" --dry-run')
    assert outcome.status == "succeeded"  # ...and never fails on what it reads before a change
    assert rep.final.steps[0].summary.endswith(": `result > 100000` does not hold")


async def test_prometheus_query_without_prometheus_is_not_checked(build: Build) -> None:
    outcome, rep = await dispatch(build(), 'promql-check "result >= 1"')
    assert outcome.status == "succeeded"  # the run goes on, and says what it could not check
    assert rep.final.steps[0].status == "not_checked"
    assert rep.final.steps[0].summary == "not checked: PROMETHEUS_URL is not set"


# k8s.patch -----------------------------------------------------------------------------------

def _deployment(kubeconfig: Path, name: str) -> Any:
    api = client.AppsV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
    return api.read_namespaced_deployment(name, "shop-staging")


async def test_k8s_patch_strategic_and_json_on_the_simulated_cluster(
        build: Build, kubeconfig: Path) -> None:
    services = build()
    outcome, rep = await dispatch(services, "patch-web 4 --dry-run")
    assert outcome.status == "succeeded", [s.summary for s in rep.final.steps]
    label, replicas = rep.final.steps
    assert label.summary == "would patch Deployment shop-web: 1 field change"
    assert dict(label.fields)["metadata.labels.team"] == "(none) → platform"
    assert dict(replicas.fields)["spec.replicas"] == "2 → 4"
    before = _deployment(kubeconfig, "shop-web")
    assert before.spec.replicas == 2 and "team" not in (before.metadata.labels or {})

    outcome, rep = await dispatch(services, "patch-web 4")
    assert outcome.status == "succeeded", [s.summary for s in rep.final.steps]
    after = _deployment(kubeconfig, "shop-web")
    assert after.spec.replicas == 4 and after.metadata.labels["team"] == "platform"
    # The same patch again changes nothing: refused before anything is written.
    outcome, rep = await dispatch(services, "patch-web 4")
    assert outcome.status == "refused"
    assert "Deployment shop-web already is as the patch says" in rep.final.steps[0].summary


async def test_k8s_patch_refuses_kinds_off_the_allowlist(build: Build) -> None:
    outcome, rep = await dispatch(build(), "patch-service")
    assert outcome.status == "refused"
    assert "k8s.patch may not change Service objects here (`k8s_patch.kinds`: Deployment, " \
        "StatefulSet, ConfigMap)" in rep.final.steps[0].summary


def test_generic_steps_are_checked_when_runbooks_load(tmp_path: Path) -> None:
    bad = {
        "secret.yaml": {"handler": "k8s.patch", "with": {"kind": "Secret", "name": "x",
                                                         "patch": {}}},
        "badname.yaml": {"handler": "k8s.patch", "with": {"kind": "ConfigMap",
                                                          "name": "Not_A_Name", "patch": {}}},
        "jsonobj.yaml": {"handler": "k8s.patch", "with": {"kind": "ConfigMap", "name": "x",
                                                          "type": "json", "patch": {"a": 1}}},
        "crd.yaml": {"handler": "k8s.patch", "with": {"kind": "Certificate", "name": "x",
                                                      "patch": {"spec": {}}}},
        "scheme.yaml": {"handler": "http.request", "with": {"url": "ftp://127.0.0.1/x"}},
        "creds.yaml": {"handler": "http.request", "with": {"url": "https://u:p@example.com"}},
        "check.yaml": {"handler": "http.request", "with": {"url": "https://example.com",
                                                           "checks": ["json.status =="]}},
        "long.yaml": {"handler": "wait", "with": {"duration": "2h"}},
        "channel.yaml": {"handler": "notify", "with": {"channel": "platform", "text": "x"}},
        "success.yaml": {"handler": "prometheus.query", "with": {"query": "up",
                                                                 "success": "result >"}},
    }
    for file, step in bad.items():
        (tmp_path / file).write_text(yaml.safe_dump({
            "name": file.removesuffix(".yaml"), "description": "x",
            "steps": [{"name": "S", **step}]}))
    with pytest.raises(RunbookError) as caught:
        load_catalog([tmp_path], Registry.builtin())
    problems = "\n".join(caught.value.problems)
    for file in bad:
        assert f"{tmp_path / file}:" in problems, (file, problems)
    assert "not `Secret`" in problems
    assert "a `json` patch is a list of operations" in problems
    assert "the API server takes `merge` or `json` patches of it" in problems
    assert "credentials in the URL" in problems
    assert "the duration" in problems or "2h" in problems


# wait and notify -----------------------------------------------------------------------------

async def test_wait_and_notify_on_the_console(build: Build) -> None:
    services = build()
    lines: list[str] = []
    trigger = Trigger(source="console", actor="U0ALICE", text="pause-and-tell --dry-run")
    outcome = await services.dispatcher.dispatch(trigger, ConsoleReporter(lines.append))
    assert outcome.status == "succeeded"
    text = "\n".join(lines)
    assert "would wait 1s" in text and "would post to `#platform`" in text
    assert "→ #platform" not in text  # a dry run sends nothing
    lines.clear()
    trigger = Trigger(source="console", actor="U0ALICE", text="pause-and-tell")
    outcome = await services.dispatcher.dispatch(trigger, ConsoleReporter(lines.append))
    assert outcome.status == "succeeded"
    text = "\n".join(lines)
    assert "waited 1s" in text
    assert "→ #platform: staging: settled <ok> & done" in text


async def test_a_cancel_ends_a_wait_early(build: Build) -> None:
    services = build()
    running = asyncio.create_task(dispatch(services, "pause-and-tell --duration 10m"))
    execution_id = None
    while execution_id is None:
        await asyncio.sleep(0.1)
        ids = await asyncio.to_thread(services.store.recent_executions, 5, running=True)
        execution_id = next((x.id for x in ids if x.status == "running"), None)
    cancelled, _ = await dispatch(services, f"cancel {execution_id}")
    assert cancelled.status != "failed"
    outcome, rep = await running
    assert outcome.status == "cancelled"
    assert "ended early" in rep.final.steps[0].summary
    assert rep.final.steps[1].status == "skipped"

