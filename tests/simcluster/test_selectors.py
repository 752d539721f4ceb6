"""Label and field selectors with the real grammar, and the real 400 for unsupported fields."""

from __future__ import annotations

import pytest
from kubernetes import client

from simcluster import SimCluster

from .helpers import pod, status_of


@pytest.fixture
def core(empty_api_client: client.ApiClient, empty_sim: SimCluster) -> client.CoreV1Api:
    api = client.CoreV1Api(empty_api_client)
    for name, labels in (("a", {"app": "web", "tier": "front"}),
                         ("b", {"app": "web", "tier": "back", "canary": "true"}),
                         ("c", {"app": "db"}),
                         ("d", {"app": "cache", "tier": "back"})):
        api.create_namespaced_pod("default", pod(name, labels=labels))
    empty_sim.wait_idle()
    return api


def _names(core: client.CoreV1Api, **kwargs: str) -> list[str]:
    return [p.metadata.name for p in core.list_namespaced_pod("default", **kwargs).items]


@pytest.mark.parametrize(("selector", "expected"), [
    ("app=web", ["a", "b"]),
    ("app==web", ["a", "b"]),
    ("app!=web", ["c", "d"]),
    ("tier in (front,back)", ["a", "b", "d"]),
    ("tier notin (back)", ["a", "c"]),
    ("canary", ["b"]),
    ("!tier", ["c"]),
    ("app=web,tier=back", ["b"]),
    ("app in (web, cache),!canary", ["a", "d"]),
])
def test_label_selectors(core: client.CoreV1Api, selector: str, expected: list[str]) -> None:
    assert _names(core, label_selector=selector) == expected


def test_bad_label_selector_is_400(core: client.CoreV1Api) -> None:
    with pytest.raises(client.ApiException) as err:
        core.list_namespaced_pod("default", label_selector="app in ()")
    assert err.value.status == 400


def test_field_selectors(core: client.CoreV1Api) -> None:
    assert _names(core, field_selector="metadata.name=b") == ["b"]
    assert _names(core, field_selector="metadata.name!=b,metadata.namespace=default") == [
        "a", "c", "d"]
    assert _names(core, field_selector="status.phase=Running") == ["a", "b", "c", "d"]
    assert _names(core, field_selector="status.phase=Pending") == []
    assert _names(core, field_selector="spec.nodeName=sim-node-1",
                  label_selector="app=db") == ["c"]


def test_event_field_selectors(core: client.CoreV1Api) -> None:
    uid = core.read_namespaced_pod("a", "default").metadata.uid
    events = core.list_namespaced_event("default", field_selector=(
        f"involvedObject.kind=Pod,involvedObject.name=a,involvedObject.namespace=default,"
        f"involvedObject.uid={uid}")).items
    assert {e.reason for e in events} >= {"Scheduled", "Started"}
    scheduled = core.list_namespaced_event("default", field_selector="reason=Scheduled").items
    assert len(scheduled) == 4
    assert core.list_namespaced_event("default", field_selector="type=Warning").items == []


def test_unsupported_field_is_400(core: client.CoreV1Api) -> None:
    with pytest.raises(client.ApiException) as err:
        core.list_namespaced_pod("default", field_selector="spec.containers=x")
    assert err.value.status == 400
    status = status_of(err.value)
    assert (status["reason"], status["message"]) == (
        "BadRequest", "field label not supported: spec.containers")
    with pytest.raises(client.ApiException) as err:
        core.list_namespaced_event("default", field_selector="status.phase=Running")
    assert err.value.status == 400
