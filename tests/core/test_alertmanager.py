"""AlertmanagerClient against the real Alertmanager: firing alerts, matcher quoting, errors."""

from __future__ import annotations

import socket
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from bot.alertmanager import AlertmanagerClient, matcher
from bot.errors import PermanentError, RetryableError
from tests.support.prometheus import AlertmanagerServer

pytest_plugins = ["tests.support.fixtures_prometheus"]

BASE = {"severity": "critical", "namespace": "shop-staging"}


async def test_firing_returns_matching_alerts(alertmanager: AlertmanagerServer) -> None:
    started = datetime.now(UTC) - timedelta(minutes=3)
    # A label no earlier test used: Alertmanager merges a pushed alert into a resolved one with
    # the same labels whose time overlaps, keeping the older start.
    alertmanager.push({**BASE, "alertname": "HighErrorRate", "deployment": "shop-api",
                       "attempt": uuid.uuid4().hex},
                      {"summary": "5xx above 5%"}, starts_at=started)
    alertmanager.push({**BASE, "alertname": "Other", "namespace": "shop-prod"})
    alertmanager.push({**BASE, "alertname": "Minor", "severity": "warning"})
    async with AlertmanagerClient(alertmanager.url) as client:
        alerts = await client.firing(BASE)
    assert [a.name for a in alerts] == ["HighErrorRate"]
    alert = alerts[0]
    assert alert.labels["deployment"] == "shop-api"
    assert alert.summary == "5xx above 5%"
    assert alert.fingerprint
    assert alert.starts_at is not None
    assert abs((alert.starts_at - started).total_seconds()) < 1


async def test_resolved_alerts_are_not_firing(alertmanager: AlertmanagerServer) -> None:
    labels = {**BASE, "alertname": "HighErrorRate", "deployment": "shop-api"}
    alertmanager.push(labels)
    alertmanager.resolve(labels)
    async with AlertmanagerClient(alertmanager.url) as client:
        assert await client.firing(BASE) == []


@pytest.mark.parametrize("hostile", [
    'shop-api", namespace=~".*',
    "back\\slash\\",
    'quote"} or {x="',
    "new\nline",
    "  spaced  ",
    "ünïcode ✓",
])
async def test_hostile_label_values_match_only_themselves(
    alertmanager: AlertmanagerServer, hostile: str
) -> None:
    alertmanager.push({**BASE, "alertname": "Hostile", "service": hostile})
    alertmanager.push({**BASE, "alertname": "Plain", "service": "shop-api"})
    async with AlertmanagerClient(alertmanager.url) as client:
        found = await client.firing({**BASE, "service": hostile})
        neighbours = await client.firing({**BASE, "service": hostile + "x"})
    assert [(a.name, a.labels["service"]) for a in found] == [("Hostile", hostile)]
    assert neighbours == []


def test_matcher_quotes_values_and_checks_names() -> None:
    assert matcher("app", "shop-api") == 'app="shop-api"'
    assert matcher("a", 'x"y\\z\nw') == 'a="x\\"y\\\\z\\nw"'
    for bad in ("", "1app", "app-name", 'app="x",b', "app name"):
        with pytest.raises(PermanentError, match="not a valid label name"):
            matcher(bad, "x")


async def test_bad_label_name_sends_no_request() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=[])

    client = AlertmanagerClient("http://am.test", transport=httpx.MockTransport(answer))
    async with client:
        with pytest.raises(PermanentError):
            await client.firing({'severity="critical"': "x"})
    assert seen == []


async def test_token_is_sent_and_never_shown() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(401, text="unauthorized")

    client = AlertmanagerClient("http://am.test/", "tok-SECRET",
                                transport=httpx.MockTransport(answer))
    async with client:
        with pytest.raises(PermanentError) as caught:
            await client.firing({"severity": "critical"})
    assert seen[0].headers["authorization"] == "Bearer tok-SECRET"
    assert seen[0].url.params.get_list("filter") == ['severity="critical"']
    assert seen[0].url.params["active"] == "true" and seen[0].url.params["silenced"] == "false"
    text = str(caught.value)
    assert "refused access (401)" in text and "OPSBOT_ALERTMANAGER_TOKEN" in text
    assert "SECRET" not in text

    basic = AlertmanagerClient("http://opsbot:pa55word@am.test/",
                               transport=httpx.MockTransport(answer))
    async with basic:
        with pytest.raises(PermanentError) as caught:
            await basic.firing({})
    assert "pa55word" not in str(caught.value) and "http://am.test" in str(caught.value)


async def test_server_errors_are_retryable_and_client_errors_permanent() -> None:
    status = {"code": 503}

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status["code"], json={"message": "bad filter"})

    async with AlertmanagerClient("http://am.test",
                                  transport=httpx.MockTransport(answer)) as client:
        with pytest.raises(RetryableError, match="503"):
            await client.firing({})
        status["code"] = 400
        with pytest.raises(PermanentError, match=r"rejected the request \(400\): bad filter"):
            await client.firing({})


async def test_unreachable_alertmanager_is_retryable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with AlertmanagerClient(f"http://127.0.0.1:{port}") as client:
        with pytest.raises(RetryableError, match="unreachable"):
            await client.firing({"severity": "critical"})
