"""Fault injection from Python and through the `/_sim/` admin API."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from kubernetes import client

from simcluster import SimCluster

from .helpers import status_of


def _admin(sim: SimCluster, method: str, path: str, body: Any = None,
           token: str | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{sim.url}{path}", data=data, method=method, headers={
        "Authorization": f"Bearer {token or sim.token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5, context=sim.ssl_context()) as response:
        return json.loads(response.read())


def test_conflict_fault_once(sim: SimCluster, apps: client.AppsV1Api) -> None:
    handle = sim.faults.inject(method="PATCH", path=r"/deployments/shop-web$", status=409)
    with pytest.raises(client.ApiException) as err:
        apps.patch_namespaced_deployment("shop-web", "shop-staging", {"spec": {"replicas": 3}})
    assert err.value.status == 409
    assert status_of(err.value)["message"].startswith(
        'Operation cannot be fulfilled on deployments.apps "shop-web"')
    apps.patch_namespaced_deployment("shop-web", "shop-staging", {"spec": {"replicas": 3}})
    assert handle.hits == 1 and handle.remaining == 0
    apps.read_namespaced_deployment("shop-web", "shop-staging")  # GETs were never affected


def test_server_error_fault_repeats_until_cleared(sim: SimCluster,
                                                  core: client.CoreV1Api) -> None:
    sim.faults.inject(method="GET", path=r"/api/v1/namespaces/shop-staging/pods", status=500,
                      times=None)
    for _ in range(2):
        with pytest.raises(client.ApiException) as err:
            core.list_namespaced_pod("shop-staging")
        assert err.value.status == 500
        assert status_of(err.value)["reason"] == "InternalError"
    sim.faults.clear()
    assert core.list_namespaced_pod("shop-staging").items


def test_delay_fault_then_served(sim: SimCluster, apps: client.AppsV1Api) -> None:
    sim.faults.inject(path=r"/deployments/shop-api$", status=None, delay_seconds=0.3)
    started = time.monotonic()
    dep = apps.read_namespaced_deployment("shop-api", "shop-staging")
    assert time.monotonic() - started >= 0.3
    assert dep.metadata.name == "shop-api"


def test_admin_api(sim: SimCluster, apps: client.AppsV1Api, core: client.CoreV1Api) -> None:
    created = _admin(sim, "POST", "/_sim/faults",
                     {"method": "GET", "path": "/deployments/shop-api$", "status": 503})
    assert created["status"] == 503 and created["times"] == 1
    with pytest.raises(client.ApiException) as err:
        apps.read_namespaced_deployment("shop-api", "shop-staging")
    assert err.value.status == 503
    _admin(sim, "POST", "/_sim/faults", {"path": ".*", "status": 500, "times": None})
    assert _admin(sim, "DELETE", "/_sim/faults") == {"cleared": True}
    apps.read_namespaced_deployment("shop-api", "shop-staging")
    _admin(sim, "POST", "/_sim/crashloop", {"namespace": "shop-prod", "workload_name": "shop-web",
                                            "container": "web", "reason": "Error",
                                            "exit_code": 2, "log": "panic: nil map"})
    _admin(sim, "POST", "/_sim/wait-idle", {"timeout": 5})
    pods = core.list_namespaced_pod("shop-prod", label_selector="app=shop-web").items
    assert all(p.status.container_statuses[0].state.waiting.reason == "CrashLoopBackOff"
               for p in pods)
    snapshot = _admin(sim, "GET", "/_sim/snapshot")
    assert snapshot == sim.snapshot()
    assert "apps/v1/Deployment/shop-prod/shop-web" in snapshot
    with pytest.raises(urllib.error.HTTPError) as denied:
        _admin(sim, "GET", "/_sim/snapshot", token="wrong")
    assert denied.value.code == 401
