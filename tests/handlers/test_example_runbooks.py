"""The example runbooks in examples/runbooks/ (certificate renewal, ingress 5xx), written only
with generic steps: they validate with `opsbot runbooks validate`, and run on the simulated
cluster with the real Prometheus scraping ingress-nginx's counters and a real HTTP server, as a
dry run and for real."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from bot.config import load_settings
from bot.console.reporter import ConsoleReporter
from bot.registry import Registry
from bot.services import Services
from bot.trigger import Trigger
from tests.conftest import DEMO_CONFIG
from tests.support.platform_exporter import (
    PlatformPrometheus,
    running_platform_prometheus,
)

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "examples" / "runbooks"
NS = "shop-staging"


@pytest.fixture(scope="module")
def platform_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformPrometheus]:
    yield from running_platform_prometheus(tmp_path_factory.mktemp("platform-prometheus"))


class _Health(BaseHTTPRequestHandler):
    def log_message(self, *_: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


@pytest.fixture
def health() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/healthz"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def services(tmp_path: Path, kubeconfig: Path,
             platform_prometheus: PlatformPrometheus) -> Iterator[Services]:
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["runbook_dirs"] = [str(EXAMPLES)]
    raw["roles"]["tester"] = {"users": ["U0ALICE"], "runbooks": ["*"], "environments": ["*"]}
    raw["http"] = {"allowed_hosts": ["127.0.0.1"]}
    raw["k8s_patch"] = {"kinds": ["Deployment", "Certificate"]}
    config_file = tmp_path / "opsbot.yaml"
    config_file.write_text(yaml.safe_dump(raw))
    built = Services.build(load_settings(config_file, environ={
        "OPSBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'opsbot.db'}",
        "KUBECONFIG": str(kubeconfig), "PROMETHEUS_URL": platform_prometheus.url,
    }), registry=Registry.builtin())
    try:
        yield built
    finally:
        built.close()


async def console(services: Services, text: str) -> tuple[str, str]:
    lines: list[str] = []
    outcome = await services.dispatcher.dispatch(
        Trigger(source="console", actor="U0ALICE", text=text), ConsoleReporter(lines.append))
    return outcome.status, "\n".join(lines)


def test_the_examples_validate() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPSBOT_"))}
    result = subprocess.run([sys.executable, "-m", "bot.cli", "runbooks", "validate",
                             str(EXAMPLES)], capture_output=True, text=True, cwd=ROOT, env=env,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "certificate-renew" in result.stdout and "ingress-5xx" in result.stdout
    # Only generic steps: what a team can write without Python.
    generic = {"http.request", "prometheus.query", "k8s.patch", "wait", "notify"}
    for file in EXAMPLES.glob("*.yaml"):
        runbook = yaml.safe_load(file.read_text())
        assert {s["handler"] for s in runbook["steps"]} <= generic, file


def _replicas(kubeconfig: Path, name: str) -> int:
    api = client.AppsV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
    return int(api.read_namespaced_deployment(name, NS).spec.replicas)


async def test_ingress_5xx_dry_run_then_for_real(
        services: Services, platform_prometheus: PlatformPrometheus, health: str,
        kubeconfig: Path) -> None:
    exporter = platform_prometheus.platform
    exporter.set_ingress(NS, "shop-web", "shop-web", rps=100, error_ratio=0.4)
    platform_prometheus.wait_for(
        'count_over_time(nginx_ingress_controller_requests{ingress="shop-web",'
        'status="503"}[5s])', lambda v: v >= 4)
    command = f"ingress-5xx shop-web shop-web 4 {health} --window 5s --settle 1s"

    status, text = await console(services, command + " --dry-run")
    assert status == "succeeded", text
    assert "would post to `#platform`" in text
    assert "would patch Deployment shop-web: 1 field change" in text
    assert "spec.replicas: 2 → 4" in text
    assert "would send GET" in text
    assert _replicas(kubeconfig, "shop-web") == 2  # the dry run changed nothing

    status, text = await console(services, command)
    assert status == "succeeded", text
    assert "does not hold" in text  # the 5xx share is over the limit
    assert "→ #platform: Ingress shop-web in staging:" in text
    assert "scaling shop-web out to 4 replicas" in text
    assert "patched Deployment shop-web: 1 field changed" in text
    assert "answered 200" in text
    assert _replicas(kubeconfig, "shop-web") == 4


async def test_certificate_renew_dry_run_on_the_simulated_cluster(
        services: Services, kubeconfig: Path) -> None:
    custom = client.CustomObjectsApi(config.new_client_from_config(config_file=str(kubeconfig)))
    custom.create_namespaced_custom_object("cert-manager.io", "v1", NS, "certificates", {
        "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
        "metadata": {"name": "shop-tls", "namespace": NS},
        "spec": {"secretName": "shop-tls", "dnsNames": ["shop.example.com"],
                 "issuerRef": {"name": "letsencrypt", "kind": "ClusterIssuer"}},
    })
    custom.patch_namespaced_custom_object_status(
        "cert-manager.io", "v1", NS, "certificates", "shop-tls",
        {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Ready"}]}})
    status, text = await console(services, "certificate-renew shop-tls --dry-run")
    # No cert-manager metrics here: the time left reads as 0 (`no_data: 0`); the last check
    # is for after the renewal, so a dry run shows what it reads now and goes on.
    assert "would post to `#platform`" in text, text
    assert "would patch Certificate shop-tls (status): 1 field change" in text, text
    assert "would wait 2m" in text
    conditions = custom.get_namespaced_custom_object(
        "cert-manager.io", "v1", NS, "certificates", "shop-tls")["status"]["conditions"]
    assert [c["type"] for c in conditions] == ["Ready"]  # nothing was changed
    assert status == "succeeded", text
    assert "Time left: now 0: `result > 7 * 86400` does not hold" in text
    assert "New certificate valid: no data now" in text
