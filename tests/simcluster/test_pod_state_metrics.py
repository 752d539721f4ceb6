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
