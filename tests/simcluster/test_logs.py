"""Pod logs as text: container selection, previous, tailLines, and the kubelet's errors."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from kubernetes import client

from simcluster import SimCluster
from simcluster.clock import fmt_time

from .helpers import pod, status_of


def _worker_pod(core: client.CoreV1Api) -> str:
    pods = core.list_namespaced_pod("shop-staging", label_selector="app=shop-worker").items
    return str(pods[0].metadata.name)


def test_previous_log_of_crashlooping_container(core: client.CoreV1Api) -> None:
    name = _worker_pod(core)
    log = core.read_namespaced_pod_log(name, "shop-staging", container="worker", previous=True)
    lines = log.splitlines()
    assert lines[-1].endswith(
        "ERROR worker: out of memory while processing batch 8812 (rss=255Mi)")
    assert len(lines) > 3
    tail = core.read_namespaced_pod_log(name, "shop-staging", container="worker",
                                        previous=True, tail_lines=2)
    assert tail.splitlines() == lines[-2:]


def test_healthy_container_log_and_tail(core: client.CoreV1Api) -> None:
    name = core.list_namespaced_pod("shop-staging",
                                    label_selector="app=shop-api").items[0].metadata.name
    log = core.read_namespaced_pod_log(name, "shop-staging")
    assert "INFO api: starting registry.example.com/shop/api:1.4.0" in log
    assert len(core.read_namespaced_pod_log(name, "shop-staging", tail_lines=1).splitlines()) == 1
    stamped = core.read_namespaced_pod_log(name, "shop-staging", tail_lines=1, timestamps=True)
    assert stamped[:4].isdigit() and stamped.split(" ", 1)[0].endswith("Z")
    with pytest.raises(client.ApiException) as err:
        core.read_namespaced_pod_log(name, "shop-staging", previous=True)
    assert err.value.status == 400
    assert status_of(err.value)["message"] == (
        f'previous terminated container "api" in pod "{name}" not found')


def test_container_must_be_named_for_multi_container_pods(
        empty_api_client: client.ApiClient, empty_sim: SimCluster) -> None:
    core = client.CoreV1Api(empty_api_client)
    core.create_namespaced_pod("default", pod("two", "app", "proxy"))
    with pytest.raises(client.ApiException) as err:
        core.read_namespaced_pod_log("two", "default", container="app")
    assert "is waiting to start: ContainerCreating" in status_of(err.value)["message"]
    empty_sim.wait_idle()
    with pytest.raises(client.ApiException) as err:
        core.read_namespaced_pod_log("two", "default")
    assert status_of(err.value)["message"] == (
        "a container name must be specified for pod two, choose one of: [app proxy]")
    assert "INFO proxy: ready" in core.read_namespaced_pod_log("two", "default", container="proxy")
    with pytest.raises(client.ApiException) as err:
        core.read_namespaced_pod_log("two", "default", container="nope")
    assert err.value.status == 400


def test_scripted_crashloop_on_a_new_workload(empty_api_client: client.ApiClient,
                                              empty_sim: SimCluster) -> None:
    core = client.CoreV1Api(empty_api_client)
    empty_sim.script_crashloop("default", "job", "app", reason="Error", exit_code=1, restarts=3,
                               log="boom\nFATAL: config missing")
    core.create_namespaced_pod("default", pod("job"))
    empty_sim.wait_idle()
    status = core.read_namespaced_pod("job", "default").status.container_statuses[0]
    assert status.restart_count == 3 and status.state.waiting.reason == "CrashLoopBackOff"
    assert (status.last_state.terminated.reason, status.last_state.terminated.exit_code) == (
        "Error", 1)
    assert core.read_namespaced_pod_log("job", "default", previous=True) == (
        "boom\nFATAL: config missing\n")


def _api_pod(core: client.CoreV1Api) -> str:
    pods = core.list_namespaced_pod("shop-staging", label_selector="app=shop-api").items
    return str(pods[0].metadata.name)


def test_since_seconds_keeps_lines_from_then_on(core: client.CoreV1Api, sim: SimCluster) -> None:
    name = _api_pod(core)
    sim.clock.advance(3600)  # an hour of health checks, one every 5 minutes
    everything = core.read_namespaced_pod_log(name, "shop-staging", timestamps=True)
    recent = core.read_namespaced_pod_log(name, "shop-staging", timestamps=True,
                                          since_seconds=600)
    assert recent and len(recent.splitlines()) < len(everything.splitlines())
    assert everything.endswith(recent)
    cutoff = sim.clock.now().timestamp() - 600
    for line in recent.splitlines():
        stamp = datetime.fromisoformat(line.split(" ", 1)[0][:26] + "+00:00")
        assert stamp.timestamp() >= cutoff
    # tailLines counts within what sinceSeconds kept, as the kubelet reads a log.
    last = core.read_namespaced_pod_log(name, "shop-staging", since_seconds=600, tail_lines=1)
    assert last.splitlines() == [recent.splitlines()[-1].split(" ", 1)[1]]


def _raw_log(sim: SimCluster, name: str, **params: str) -> httpx.Response:
    # The Python client has no sinceTime: ask as kubectl does (`kubectl logs --since-time`).
    return httpx.get(f"{sim.url}/api/v1/namespaces/shop-staging/pods/{name}/log",
                     params=params, headers={"Authorization": f"Bearer {sim.token}"},
                     verify=sim.ssl_context(), timeout=10)


def test_since_time_and_limit_bytes(core: client.CoreV1Api, sim: SimCluster) -> None:
    name = _api_pod(core)
    future = fmt_time(sim.clock.now() + timedelta(hours=1))
    assert _raw_log(sim, name, sinceTime=future).text == ""
    past = fmt_time(sim.clock.now() - timedelta(minutes=3))
    recent = _raw_log(sim, name, sinceTime=past).text.splitlines()
    assert 2 <= len(recent) <= 4  # a request a minute
    both = _raw_log(sim, name, sinceTime=past, sinceSeconds="60")
    assert both.status_code == 422
    assert "at most one of `sinceTime` or `sinceSeconds` may be specified" in both.json()["message"]
    full = core.read_namespaced_pod_log(name, "shop-staging")
    assert core.read_namespaced_pod_log(name, "shop-staging", limit_bytes=10) == full[:10]


@pytest.mark.parametrize(("options", "field", "why"), [
    ({"tail_lines": -1}, "tailLines", "must be greater than or equal to 0"),
    ({"since_seconds": 0}, "sinceSeconds", "must be greater than 0"),
    ({"limit_bytes": 0}, "limitBytes", "must be greater than 0"),
])
def test_invalid_log_options_are_422(core: client.CoreV1Api, options: dict[str, Any],
                                     field: str, why: str) -> None:
    name = _api_pod(core)
    with pytest.raises(client.ApiException) as err:
        core.read_namespaced_pod_log(name, "shop-staging", **options)
    assert err.value.status == 422
    status = status_of(err.value)
    assert status["reason"] == "Invalid"
    assert status["details"]["causes"][0]["field"] == field
    assert why in status["message"]
