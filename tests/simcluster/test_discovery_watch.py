"""Discovery good enough for the dynamic client, watch streams, and the CLI entry point."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from kubernetes import client, config, dynamic, watch

from simcluster import SimCluster


def test_version_and_discovery(kube_api_client: client.ApiClient, tmp_path: Path) -> None:
    assert client.VersionApi(kube_api_client).get_code().major == "1"
    groups = {g.name for g in client.ApisApi(kube_api_client).get_api_versions().groups}
    assert {"apps", "coordination.k8s.io", "velero.io", "argoproj.io"} <= groups
    resources = client.AppsV1Api(kube_api_client).get_api_resources().resources
    assert {"deployments", "deployments/scale", "replicasets", "statefulsets"} <= {
        r.name for r in resources}
    dyn = dynamic.DynamicClient(kube_api_client, cache_file=str(tmp_path / "discovery.json"))
    deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    found = deployments.get(namespace="shop-staging", name="shop-api")
    assert found.spec.replicas == 3
    pods = dyn.resources.get(api_version="v1", kind="Pod")
    assert len(pods.get(namespace="shop-prod", label_selector="app=shop-web").items) == 2


def test_watch_streams_changes(sim: SimCluster, core: client.CoreV1Api,
                               apps: client.AppsV1Api) -> None:
    start = apps.list_namespaced_deployment("shop-staging").metadata.resource_version
    seen: list[tuple[str, str]] = []

    def consume() -> None:
        stream = watch.Watch().stream(apps.list_namespaced_deployment, "shop-staging",
                                      resource_version=start, timeout_seconds=3)
        for event in stream:
            seen.append((event["type"], event["object"].metadata.name))
            if event["type"] == "DELETED":
                break

    reader = threading.Thread(target=consume)
    reader.start()
    apps.patch_namespaced_deployment("shop-web", "shop-staging", {"spec": {"replicas": 3}})
    apps.delete_namespaced_deployment("shop-worker", "shop-staging")
    reader.join(timeout=10)
    assert ("MODIFIED", "shop-web") in seen
    assert seen[-1] == ("DELETED", "shop-worker")


def test_watch_from_now_lists_current_state_first(core: client.CoreV1Api) -> None:
    events = list(watch.Watch().stream(core.list_namespace, timeout_seconds=1))
    assert {e["type"] for e in events} == {"ADDED"}
    assert "shop-prod" in {e["object"].metadata.name for e in events}


def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "sim.kubeconfig"
    code = ("from simcluster import serve_forever; "
            f"serve_forever('127.0.0.1:0', {str(kubeconfig)!r}, 'empty')")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env=os.environ | {"PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("simcluster listening on https://127.0.0.1:")
        assert line.endswith(f"kubeconfig written to {kubeconfig}")
        api = config.new_client_from_config(config_file=str(kubeconfig))
        with api:
            names = [n.metadata.name for n in client.CoreV1Api(api).list_namespace().items]
        assert names == ["default"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
