"""AlertmanagerClient silences against the real Alertmanager: create, list, expire, and user text
that stays a literal matcher value."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from bot.alertmanager import AlertmanagerClient, SilenceMatcher, check_silence_id
from bot.errors import NotFound, PermanentError, RetryableError
from tests.support.prometheus import AlertmanagerServer

pytest_plugins = ["tests.support.fixtures_prometheus"]

NS = {"namespace": "shop-staging"}


def expire_all(server: AlertmanagerServer) -> None:
    for item in httpx.get(f"{server.url}/api/v2/silences", timeout=10).json():
        if item["status"]["state"] != "expired":
            httpx.delete(f"{server.url}/api/v2/silence/{item['id']}", timeout=10)


@pytest.fixture
def am(alertmanager: AlertmanagerServer) -> Iterator[AlertmanagerServer]:
    """The session's Alertmanager with no silence in force when the test starts and ends."""
    expire_all(alertmanager)
    yield alertmanager
    expire_all(alertmanager)


def window(minutes: int = 60) -> dict[str, datetime]:
    start = datetime.now(UTC)
    return {"starts_at": start, "ends_at": start + timedelta(minutes=minutes)}


async def test_create_list_and_expire(am: AlertmanagerServer) -> None:
    times = window(90)
    async with AlertmanagerClient(am.url) as client:
        silence_id = await client.create_silence(
            {"alertname": "KubePodCrashLooping", "pod": "shop-worker-x", **NS},
            created_by="alice (U0ALICE) via opsbot",
            comment="noisy during the migration (opsbot execution ex-1)",
            **times,
        )
        assert check_silence_id(silence_id) == silence_id
        listed = await client.silences()
        filtered = await client.silences({"alertname": "KubePodCrashLooping"})
        other = await client.silences({"alertname": "SomethingElse"})

        assert [s.id for s in listed] == [silence_id] == [s.id for s in filtered]
        assert other == []
        found = listed[0]
        assert found.state == "active"
        assert set(found.matchers) == {
            SilenceMatcher("alertname", "KubePodCrashLooping"),
            SilenceMatcher("pod", "shop-worker-x"),
            SilenceMatcher("namespace", "shop-staging"),
        }
        assert found.labels == {"alertname": "KubePodCrashLooping", "pod": "shop-worker-x",
                                **NS}
        assert found.created_by == "alice (U0ALICE) via opsbot"
        assert found.comment == "noisy during the migration (opsbot execution ex-1)"
        assert found.ends_at is not None
        assert abs((found.ends_at - times["ends_at"]).total_seconds()) < 0.01

        await client.expire_silence(silence_id)
        assert await client.silences() == []
        expired = await client.silences({"pod": "shop-worker-x"}, states=("expired",))
        assert silence_id in [s.id for s in expired]
        await client.expire_silence(silence_id.upper())  # again, and in another spelling


async def test_a_silence_silences_only_its_alert(am: AlertmanagerServer) -> None:
    labels = {"alertname": "SilenceScope", "severity": "critical", **NS}
    am.push(labels)
    am.push({**labels, "namespace": "shop-prod"})
    async with AlertmanagerClient(am.url) as client:
        await client.create_silence(labels, created_by="t", comment="scope test", **window())
        await wait_silenced(client, labels)
        still = await client.firing({"alertname": "SilenceScope"})
    assert [a.labels["namespace"] for a in still] == ["shop-prod"]


@pytest.mark.parametrize("hostile", [
    'shop-worker", namespace=~".*',
    '"} or x="',
    "new\nline",
    "{{ 7 * 7 }}",
    "{% raw %}x",
    "back\\slash\\",
    "ünïcode ✓ <!channel>",
])
async def test_hostile_values_are_literal_matcher_values(
    am: AlertmanagerServer, hostile: str
) -> None:
    labels = {"alertname": "Hostile", "pod": hostile, **NS}
    am.push(labels)
    am.push({**labels, "pod": hostile + "x"})
    am.push({**labels, "pod": "shop-worker-x"})
    async with AlertmanagerClient(am.url) as client:
        silence_id = await client.create_silence(
            labels, created_by=f"eve {hostile}", comment=hostile, **window()
        )
        [found] = await client.silences({"pod": hostile})
        await wait_silenced(client, labels)
        firing = await client.firing({"alertname": "Hostile"})
    assert found.id == silence_id
    assert found.labels["pod"] == hostile
    assert all(not m.is_regex and m.is_equal for m in found.matchers)
    assert (found.created_by, found.comment) == (f"eve {hostile}", hostile)
    assert sorted(a.labels["pod"] for a in firing) == sorted([hostile + "x", "shop-worker-x"])


@pytest.mark.parametrize("bad", [
    "", "not-a-uuid", "../silences", "0b8b5c1e-2a4b-4c1e-9d3a-1f2e3d4c5b6a/../../alerts",
    "{0b8b5c1e-2a4b-4c1e-9d3a-1f2e3d4c5b6a}", "urn:uuid:0b8b5c1e-2a4b-4c1e-9d3a-1f2e3d4c5b6a",
    "0b8b5c1e2a4b4c1e9d3a1f2e3d4c5b6a", "0b8b5c1e-2a4b-4c1e-9d3a-1f2e3d4c5b6a\n",
    "0b8b5c1e-2a4b-4c1e-9d3a-1f2e3d4c5b6a?x=1", "0b8b5c1e-2a4b-4c1e-9d3a-1f2e3d4c5b6g",
])
async def test_bad_silence_id_sends_no_request(bad: str) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    async with AlertmanagerClient("http://am.test", transport=httpx.MockTransport(answer)) as c:
        with pytest.raises(PermanentError, match="is not a silence id"):
            await c.expire_silence(bad)
    assert seen == []


async def test_unknown_silence_is_not_found(am: AlertmanagerServer) -> None:
    async with AlertmanagerClient(am.url) as client:
        with pytest.raises(NotFound, match="no silence 0b8b5c1e-2a4b-4c1e-9d3a-1f2e3d4c5b6a"):
            await client.expire_silence("0b8b5c1e-2a4b-4c1e-9d3a-1f2e3d4c5b6a")


@pytest.mark.parametrize(("matchers", "change", "error"), [
    ({"alert-name": "X"}, {}, "not a valid label name"),
    ({'alertname="X",b': "X"}, {}, "not a valid label name"),
    ({}, {}, "at least one matcher"),
    ({"alertname": ""}, {}, "non-empty value"),
    ({"alertname": "X"}, {"ends_at": datetime.now(UTC) - timedelta(hours=1)}, "end after"),
    ({"alertname": "X"}, {"created_by": " "}, "author"),
    ({"alertname": "X"}, {"starts_at": datetime(2030, 1, 1)}, "time zone"),
])
async def test_bad_silence_sends_no_request(
    matchers: dict[str, str], change: dict[str, object], error: str
) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"silenceID": "x"})

    args: dict[str, object] = {**window(), "created_by": "t", "comment": "c", **change}
    async with AlertmanagerClient("http://am.test", transport=httpx.MockTransport(answer)) as c:
        with pytest.raises(PermanentError, match=error):
            await c.create_silence(matchers, **args)  # type: ignore[arg-type]
    assert seen == []


async def test_silence_requests_carry_the_token_and_keep_the_error_mapping() -> None:
    seen: list[httpx.Request] = []
    status = {"code": 503}

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status["code"], json={"message": "nope"})

    client = AlertmanagerClient("http://am.test", "tok-SECRET",
                                transport=httpx.MockTransport(answer))
    async with client:
        with pytest.raises(RetryableError, match="503"):
            await client.create_silence({"alertname": "X"}, created_by="t", comment="c",
                                        **window())
        status["code"] = 403
        with pytest.raises(PermanentError, match="refused access") as caught:
            await client.silences()
        status["code"] = 400
        with pytest.raises(PermanentError, match=r"rejected the request \(400\): nope"):
            await client.expire_silence("0b8b5c1e-2a4b-4c1e-9d3a-1f2e3d4c5b6a")
    assert "SECRET" not in str(caught.value)
    assert [r.method for r in seen] == ["POST", "GET", "DELETE"]
    assert all(r.headers["authorization"] == "Bearer tok-SECRET" for r in seen)
    assert seen[0].url.path == "/api/v2/silences"
    assert seen[2].url.path == "/api/v2/silence/0b8b5c1e-2a4b-4c1e-9d3a-1f2e3d4c5b6a"


async def wait_silenced(client: AlertmanagerClient, labels: dict[str, str]) -> None:
    """Alertmanager marks alerts silenced shortly after the silence exists; wait for that."""
    for _ in range(100):
        if not await client.firing(labels):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{labels} still firing, not silenced")


async def test_a_silence_post_that_times_out_is_not_retried() -> None:
    """The silence may exist already: a retry would make a second one."""

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            raise httpx.ReadTimeout("slow", request=request)
        raise httpx.ConnectTimeout("down", request=request)

    async with AlertmanagerClient("http://am.test", transport=httpx.MockTransport(answer)) as c:
        with pytest.raises(PermanentError, match="may have been created"):
            await c.create_silence({"alertname": "X"}, created_by="t", comment="c", **window())
        with pytest.raises(RetryableError, match="did not answer in time"):
            await c.silences()  # reading is safe to retry
