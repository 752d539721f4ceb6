"""The alert-chain harness itself: what the real Prometheus and Alertmanager deliver to a webhook.

The tests share one chain (it takes ~6s to start), each in its own namespace and so its own
Alertmanager group. A refused token is tested against the real bot in test_alert_chain.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.alert_chain import AlertChain, chain_starter
from tests.support.webhook_recorder import Delivery, WebhookRecorder

pytest_plugins = ["tests.support.fixtures_alert_chain"]

pytestmark = pytest.mark.slow

TOKEN = "chain-test-token"


@pytest.fixture(scope="module")
def shared_recorder() -> Iterator[WebhookRecorder]:
    with WebhookRecorder(token=TOKEN) as recorder:
        yield recorder


@pytest.fixture(scope="module")
def shared_chain(
    shared_recorder: WebhookRecorder, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AlertChain]:
    with chain_starter(tmp_path_factory.mktemp("alert-chain")) as start:
        yield start(shared_recorder.url, TOKEN)


@pytest.fixture
def recorder(shared_recorder: WebhookRecorder) -> Iterator[WebhookRecorder]:
    shared_recorder.reset()
    shared_recorder.require_token(TOKEN)
    yield shared_recorder
    shared_recorder.reset()


def in_namespace(deliveries: list[Delivery], namespace: str) -> list[Delivery]:
    return [d for d in deliveries if group_namespace(d.json) == namespace]


def group_namespace(body: Any) -> str | None:
    return body.get("groupLabels", {}).get("namespace") if isinstance(body, dict) else None


def notifications(recorder: WebhookRecorder, namespace: str, status: str) -> list[dict[str, Any]]:
    return [n for n in recorder.notifications(status) if group_namespace(n) == namespace]


def test_a_fired_alert_arrives_as_a_v4_payload_with_the_bearer_token(
    shared_chain: AlertChain, recorder: WebhookRecorder
) -> None:
    labels = shared_chain.fire(
        "KubePodCrashLooping", namespace="chain-fire", deployment="shop-api",
        pod="shop-api-7d9c-x2x", severity="critical",
    )

    [payload] = shared_chain.wait_until(lambda: notifications(recorder, "chain-fire", "firing"))

    assert payload["version"] == "4"
    assert payload["status"] == "firing"
    assert payload["receiver"] == "opsbot"
    assert payload["groupLabels"] == {"alertname": "KubePodCrashLooping",
                                      "namespace": "chain-fire"}
    assert payload["groupKey"] == (
        '{}:{alertname="KubePodCrashLooping", namespace="chain-fire"}'
    )
    [alert] = payload["alerts"]
    assert alert["status"] == "firing"
    assert alert["labels"] == labels == {
        "alertname": "KubePodCrashLooping", "namespace": "chain-fire",
        "deployment": "shop-api", "pod": "shop-api-7d9c-x2x", "severity": "critical",
    }
    assert alert["annotations"]["description"] == (
        "Pod chain-fire/shop-api-7d9c-x2x is in CrashLoopBackOff."
    )
    assert alert["fingerprint"]
    assert alert["startsAt"]
    [delivery] = in_namespace(recorder.deliveries, "chain-fire")
    assert delivery.path == "/alertmanager"
    assert delivery.authorization == f"Bearer {TOKEN}"
    assert delivery.headers["content-type"] == "application/json"

    # Clearing the series resolves the alert: one more notification, the same fingerprint.
    shared_chain.resolve(**labels)
    [resolved] = shared_chain.wait_until(
        lambda: notifications(recorder, "chain-fire", "resolved")
    )
    assert resolved["groupKey"] == payload["groupKey"]
    [ended] = resolved["alerts"]
    assert ended["status"] == "resolved"
    assert ended["fingerprint"] == alert["fingerprint"]
    assert ended["labels"] == labels
    assert ended["endsAt"] > ended["startsAt"]


def test_alerts_of_one_namespace_are_grouped_and_of_another_not(
    shared_chain: AlertChain, recorder: WebhookRecorder
) -> None:
    first = shared_chain.fire("HighErrorRate", namespace="chain-group-a", deployment="a")
    second = shared_chain.fire("HighErrorRate", namespace="chain-group-a", deployment="b")
    other = shared_chain.fire("HighErrorRate", namespace="chain-group-b", deployment="a")

    def alerts_delivered(namespace: str) -> set[str]:
        return {
            alert["labels"]["deployment"]
            for n in notifications(recorder, namespace, "firing") for alert in n["alerts"]
        }

    shared_chain.wait_until(lambda: alerts_delivered("chain-group-a") == {"a", "b"})
    shared_chain.wait_until(lambda: alerts_delivered("chain-group-b") == {"a"})

    def all_resolved(namespace: str) -> bool:
        return any(
            all(alert["status"] == "resolved" for alert in n["alerts"])
            for n in notifications(recorder, namespace, "resolved")
        )

    for labels in (first, second, other):
        shared_chain.resolve(**labels)
    shared_chain.wait_until(lambda: all_resolved("chain-group-a"))
    shared_chain.wait_until(lambda: all_resolved("chain-group-b"))


def test_alertmanager_retries_a_delivery_answered_500(
    shared_chain: AlertChain, recorder: WebhookRecorder, record_property: Any
) -> None:
    recorder.fail_next(1, status=500)
    labels = shared_chain.fire("KubeDeploymentReplicasMismatch", namespace="chain-retry")

    [payload] = shared_chain.wait_until(lambda: notifications(recorder, "chain-retry", "firing"))

    attempts = in_namespace(recorder.deliveries, "chain-retry")
    record_property("attempts", len(attempts))
    assert [d.status for d in attempts] == [500, 200]
    assert attempts[0].json == payload  # the same notification, sent again
    assert all(d.authorization == f"Bearer {TOKEN}" for d in attempts)

    shared_chain.resolve(**labels)
    shared_chain.wait_until(lambda: notifications(recorder, "chain-retry", "resolved"))
