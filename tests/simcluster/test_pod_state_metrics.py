"""kube-state-metrics' container series at `GET /_sim/metrics`, so kube-prometheus' alert rules
(`KubePodCrashLooping`) fire against the simulated cluster: restarts of every container, and
the reason of each one waiting (staging's shop-worker: CrashLoopBackOff)."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from simcluster import SimCluster


def samples(sim: SimCluster, name: str) -> dict[str, tuple[dict[str, str], float]]:
    """`name`'s samples by pod."""
    response = httpx.get(f"{sim.url}/_sim/metrics",
                         headers={"Authorization": f"Bearer {sim.token}"}, timeout=10,
                         verify=sim.ssl_context())
    assert response.status_code == 200
    return {s.labels["pod"]: (s.labels, s.value)
            for family in text_string_to_metric_families(response.text)
            for s in family.samples if s.name == name}


def test_restarts_and_waiting_reasons_of_the_demo_pods(sim: SimCluster) -> None:
    restarts = samples(sim, "kube_pod_container_status_restarts_total")
    workers = [pod for pod in restarts if pod.startswith("shop-worker-")]
    [worker] = workers
    labels, count = restarts[worker]
    assert count == 7
    assert {k: labels[k] for k in ("namespace", "container")} == {
        "namespace": "shop-staging", "container": "worker"}
    assert labels["uid"]
    assert {value for pod, (_, value) in restarts.items() if pod != worker} == {0}
    assert sum(labels["namespace"] == "shop-prod" for labels, _ in restarts.values()) == 5

    waiting = samples(sim, "kube_pod_container_status_waiting_reason")
    assert list(waiting) == [worker]  # every other container runs
    labels, value = waiting[worker]
    assert labels["reason"] == "CrashLoopBackOff" and value == 1


def test_limits_and_modelled_cpu_and_memory_of_running_containers(sim: SimCluster) -> None:
    limits = [(labels, value) for family in _families(sim)
              for s in family.samples if s.name == "kube_pod_container_resource_limits"
              for labels, value in [(s.labels, s.value)]
              if labels["pod"].startswith("shop-api-") and labels["namespace"] == "shop-staging"]
    by_resource = {(labels["resource"], labels["unit"]): value for labels, value in limits}
    assert by_resource == {("cpu", "core"): 0.5, ("memory", "byte"): 512 * 2**20}

    cpu = samples(sim, "container_cpu_usage_seconds_total")
    memory = samples(sim, "container_memory_working_set_bytes")
    api = [pod for pod in cpu if pod.startswith("shop-api-")]
    assert len(api) == 3 + 3  # staging and prod
    labels, used = cpu[api[0]]
    assert set(labels) == {"namespace", "pod", "container"} and used > 0
    assert memory[api[0]][1] == int(512 * 2**20 * 0.55)
    # the crash-looping worker is not running: no usage, but its limits and restarts
    assert not [pod for pod in cpu if pod.startswith("shop-worker-")]


def test_cpu_use_follows_the_scripted_utilization(sim: SimCluster) -> None:
    import time

    sim.script_cpu_utilization("shop-staging", "shop-web", 90)
    first = samples(sim, "container_cpu_usage_seconds_total")
    time.sleep(1.0)
    second = samples(sim, "container_cpu_usage_seconds_total")
    web = [p for p in first if p.startswith("shop-web-") and first[p][0]["namespace"]
           == "shop-staging"]
    assert web
    # 90% of a 50m request: 0.045 CPU seconds per second, against the default 20%
    rates = [second[p][1] - first[p][1] for p in web]
    assert all(rate >= 0.04 for rate in rates), rates


def _families(sim: SimCluster) -> list:  # type: ignore[type-arg]
    response = httpx.get(f"{sim.url}/_sim/metrics",
                         headers={"Authorization": f"Bearer {sim.token}"}, timeout=10,
                         verify=sim.ssl_context())
    return list(text_string_to_metric_families(response.text))
