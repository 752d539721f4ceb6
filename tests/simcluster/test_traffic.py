"""Synthetic traffic at `GET /_sim/metrics`: Prometheus text format, monotonic counters, error
ratio and latency by image, the demo's bad release, and the admin API."""

from __future__ import annotations

import math
import time
from typing import Any

import httpx
import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from simcluster import SimCluster
from simcluster.traffic import RPS_PER_POD

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
IMAGE = "registry.example.com/shop"


class FakeClock:
    """Monotonic seconds that only move when told; starts at the real monotonic time, so the
    switch from the real clock adds no elapsed time."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(sim: SimCluster) -> FakeClock:
    fake = FakeClock()
    sim.traffic.clock = fake
    sim.metrics_text()  # settle: from here on, time moves only with the fake clock
    return fake


def _get(sim: SimCluster, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token or sim.token}"}
    return httpx.get(f"{sim.url}/_sim/metrics", headers=headers, timeout=10,
                     verify=sim.ssl_context())


def scrape(sim: SimCluster) -> Samples:
    """The traffic's samples (the pods' CPU use follows the simulated clock, not this one)."""
    response = _get(sim)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples if s.name.startswith("http_")}


def requests(samples: Samples, app: str, code: str, namespace: str = "shop-staging") -> float:
    key = frozenset({"app": app, "namespace": namespace, "code": code}.items())
    return samples[("http_requests_total", key)]


def bucket(samples: Samples, app: str, le: str, namespace: str = "shop-staging") -> float:
    key = frozenset({"app": app, "namespace": namespace, "le": le}.items())
    return samples[("http_request_duration_seconds_bucket", key)]


def delta(before: Samples, after: Samples, fn: Any, *args: str) -> float:
    return float(fn(after, *args) - fn(before, *args))


def set_image(apps: client.AppsV1Api, name: str, container: str, image: str,
              sim: SimCluster) -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": container,
                                                            "image": image}]}}}}
    apps.patch_namespaced_deployment(name, "shop-staging", patch)
    sim.wait_idle()


def test_text_format_parses_with_one_series_per_serving_workload(sim: SimCluster) -> None:
    response = _get(sim)
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    assert families["http_requests"].type == "counter"
    assert families["http_request_duration_seconds"].type == "histogram"
    apps = {(s.labels["namespace"], s.labels["app"]) for s in families["http_requests"].samples}
    # shop-worker crash-loops in staging: its pods are never ready and serve nothing
    assert apps == {(ns, app) for ns in ("shop-staging", "shop-prod")
                    for app in ("shop-api", "shop-web")}
    codes = {s.labels["code"] for s in families["http_requests"].samples}
    assert codes == {"200", "500"}
    histogram = [s for s in families["http_request_duration_seconds"].samples
                 if s.labels.get("app") == "shop-api" and s.labels["namespace"] == "shop-prod"]
    names = {s.name for s in histogram}
    assert names == {f"http_request_duration_seconds_{x}" for x in ("bucket", "sum", "count")}
    assert [s.labels["le"] for s in histogram if s.name.endswith("_bucket")][-1] == "+Inf"


def test_counters_advance_with_time_and_never_go_back(sim: SimCluster, clock: FakeClock) -> None:
    first = scrape(sim)
    clock.now += 10
    second = scrape(sim)
    served = delta(first, second, requests, "shop-api", "200") + delta(
        first, second, requests, "shop-api", "500")
    assert served == pytest.approx(10 * 3 * RPS_PER_POD, abs=2)  # 3 ready pods
    assert delta(first, second, requests, "shop-web", "200") == pytest.approx(
        10 * 2 * RPS_PER_POD * 0.999, abs=2)
    third = scrape(sim)  # no time passed
    assert third == second
    clock.now += 0.3
    fourth = scrape(sim)
    assert all(fourth[key] >= value for key, value in second.items() if "_sum" not in key[0])
    for app in ("shop-api", "shop-web"):  # histogram buckets are cumulative
        les = ["0.005", "0.01", "0.025", "0.05", "0.075", "0.1", "0.25", "+Inf"]
        values = [bucket(fourth, app, le) for le in les]
        assert values == sorted(values)


def test_error_ratio_and_latency_follow_the_scripted_image(
    sim: SimCluster, clock: FakeClock, apps: client.AppsV1Api
) -> None:
    sim.script_traffic(":1.5.0", error_ratio=0.5, p99_seconds=0.4)
    set_image(apps, "shop-api", "api", f"{IMAGE}/api:1.5.0", sim)
    before = scrape(sim)
    clock.now += 20
    after = scrape(sim)
    errors = delta(before, after, requests, "shop-api", "500")
    total = errors + delta(before, after, requests, "shop-api", "200")
    assert errors / total == pytest.approx(0.5, abs=0.01)
    # 99% of requests within p99: more than 1% are slower than 0.25 s, fewer than 1% > 0.5 s
    count = delta(before, after, bucket, "shop-api", "+Inf")
    assert delta(before, after, bucket, "shop-api", "0.25") / count < 0.99
    assert delta(before, after, bucket, "shop-api", "0.5") / count > 0.99
    # the other app still runs an unscripted image: defaults (0.1% errors, p99 80 ms)
    web_errors = delta(before, after, requests, "shop-web", "500")
    web_total = web_errors + delta(before, after, requests, "shop-web", "200")
    assert web_errors / web_total == pytest.approx(0.001, abs=0.001)
    web_count = delta(before, after, bucket, "shop-web", "+Inf")
    assert delta(before, after, bucket, "shop-web", "0.1") / web_count > 0.99
    assert delta(before, after, bucket, "shop-web", "0.05") / web_count < 0.99


def test_demo_seed_scripts_a_bad_release(
    sim: SimCluster, clock: FakeClock, apps: client.AppsV1Api
) -> None:
    set_image(apps, "shop-api", "api", f"{IMAGE}/api:1.6.0", sim)
    before = scrape(sim)
    clock.now += 10
    after = scrape(sim)
    errors = delta(before, after, requests, "shop-api", "500")
    total = errors + delta(before, after, requests, "shop-api", "200")
    assert errors / total == pytest.approx(0.2, abs=0.01)
    count = delta(before, after, bucket, "shop-api", "+Inf")
    assert delta(before, after, bucket, "shop-api", "0.25") / count < 0.99  # p99 0.45 s


def test_statefulset_pods_serve_under_the_app_label(empty_sim: SimCluster) -> None:
    empty_sim.traffic.clock = clock = FakeClock()
    sts = {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "default", "labels": {"app": "orders-db"}},
        "spec": {"replicas": 2, "serviceName": "db",
                 "selector": {"matchLabels": {"app": "orders-db"}},
                 "template": {"metadata": {"labels": {"app": "orders-db"}},
                              "spec": {"containers": [{"name": "db", "image": "pg:16"}]}}},
    }
    response = httpx.post(f"{empty_sim.url}/apis/apps/v1/namespaces/default/statefulsets",
                          json=sts, headers={"Authorization": f"Bearer {empty_sim.token}"},
                          verify=empty_sim.ssl_context())
    assert response.status_code == 201
    empty_sim.wait_idle()
    before = scrape(empty_sim)
    clock.now += 10
    after = scrape(empty_sim)
    served = delta(before, after, requests, "orders-db", "200", "default")
    assert served == pytest.approx(10 * 2 * RPS_PER_POD * 0.999, abs=2)


def test_admin_api_scripts_traffic_and_needs_the_token(
    sim: SimCluster, clock: FakeClock, apps: client.AppsV1Api
) -> None:
    auth = {"Authorization": f"Bearer {sim.token}"}
    api = httpx.Client(base_url=sim.url, verify=sim.ssl_context())
    assert _get(sim, token="wrong").status_code == 401
    assert api.get("/_sim/metrics").status_code == 401
    body = {"image_substring": "web:2.2.0", "error_ratio": 1.0, "p99_seconds": 0.2}
    assert api.post("/_sim/traffic", json=body).status_code == 401
    bad = api.post("/_sim/traffic", json={**body, "error_ratio": 2}, headers=auth)
    assert bad.status_code == 400 and "error_ratio" in bad.json()["message"]
    missing = api.post("/_sim/traffic", json={"error_ratio": 0.1}, headers=auth)
    assert missing.status_code == 400 and "image_substring" in missing.json()["message"]
    ok = api.post("/_sim/traffic", json=body, headers=auth)
    assert ok.status_code == 201
    set_image(apps, "shop-web", "web", f"{IMAGE}/web:2.2.0", sim)
    before = scrape(sim)
    clock.now += 10
    after = scrape(sim)
    assert delta(before, after, requests, "shop-web", "200") == 0
    assert delta(before, after, requests, "shop-web", "500") == pytest.approx(
        10 * 2 * RPS_PER_POD, abs=2)


def test_clear_scripts_forgets_traffic_scripts(sim: SimCluster) -> None:
    sim.script_traffic(":9.9.9", error_ratio=1.0)
    sim.clear_scripts()
    assert sim.traffic.scripts.items() == ()
    profile = sim.traffic.scripts.profile_for([f"{IMAGE}/api:9.9.9"])
    assert (profile.error_ratio, profile.p99_seconds) == (0.001, 0.08)
    assert math.isclose(profile.within(0.08), 0.99)
