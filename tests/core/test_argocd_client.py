"""The Argo CD client against the stand-in over real HTTP: reads, sync, history, rollback,
auto-sync, and errors mapped to ours with Argo CD's own message."""

from __future__ import annotations

import json
import re

import pytest

from bot.argocd import ArgoCDClient
from bot.errors import NotFound, PermanentError, RetryableError
from tests.support.argocd_standin import TOKEN, ArgoCDStandIn

APP = "shop-api-staging"


@pytest.fixture
def argocd(argocd_server: ArgoCDStandIn) -> ArgoCDStandIn:
    argocd_server.reset()
    argocd_server.add_app(APP, history=("1.2.0", "1.3.0", "1.4.0"))
    return argocd_server


async def _settle(client: ArgoCDClient, name: str = APP, polls: int = 10) -> None:
    for _ in range(polls):
        app = await client.get_app(name)
        if not app.operation_running and app.health_status != "Progressing":
            return
    raise AssertionError("the stand-in never settled")


async def test_get_app_reads_status(argocd: ArgoCDStandIn) -> None:
    async with ArgoCDClient(argocd.url, TOKEN) as client:
        app = await client.get_app(APP)
    assert (app.sync_status, app.health_status) == ("Synced", "Healthy")
    assert [(h.id, h.revision) for h in app.history] == [(0, "1.2.0"), (1, "1.3.0"),
                                                          (2, "1.4.0")]
    assert app.current is not None and app.current.revision == "1.4.0"
    assert app.target_revision == "1.4.0" and not app.auto_sync
    assert app.operation_phase == "Succeeded" and app.destination_namespace == "shop-staging"
    call = argocd.calls[-1]
    assert (call.method, call.path, call.auth) == ("GET", f"/api/v1/applications/{APP}",
                                                   f"Bearer {TOKEN}")


async def test_sync_progresses_and_appends_history(argocd: ArgoCDStandIn) -> None:
    async with ArgoCDClient(argocd.url, TOKEN) as client:
        started = await client.sync(APP, "1.5.0")
        assert started.operation_pending
        running = await client.get_app(APP)
        assert (running.operation_phase, running.health_status) == ("Running", "Progressing")
        await _settle(client)
        app = await client.get_app(APP)
    assert app.current is not None and (app.current.id, app.current.revision) == (3, "1.5.0")
    assert app.operation_phase == "Succeeded" and app.health_status == "Healthy"
    assert app.sync_status == "OutOfSync"  # git still tracks 1.4.0
    (call,) = argocd.calls_to("POST", "/sync")
    assert call.body == {"revision": "1.5.0", "prune": False, "dryRun": False}


async def test_rollback_goes_to_a_history_entry(argocd: ArgoCDStandIn) -> None:
    async with ArgoCDClient(argocd.url, TOKEN) as client:
        await client.rollback(APP, 1)
        await _settle(client)
        app = await client.get_app(APP)
    assert app.current is not None and app.current.revision == "1.3.0"
    (call,) = argocd.calls_to("POST", "/rollback")
    assert call.body == {"id": 1, "prune": False, "dryRun": False}


async def test_rollback_refused_with_argocds_message_while_auto_sync(
        argocd: ArgoCDStandIn) -> None:
    argocd.set_auto_sync(APP, True)
    async with ArgoCDClient(argocd.url, TOKEN) as client:
        with pytest.raises(PermanentError) as err:
            await client.rollback(APP, 1)
    assert "rollback cannot be initiated when auto-sync is enabled" in str(err.value)
    assert "(400)" in str(err.value)


async def test_set_auto_sync_patches_sync_policy(argocd: ArgoCDStandIn) -> None:
    async with ArgoCDClient(argocd.url, TOKEN) as client:
        on = await client.set_auto_sync(APP, True)
        assert on.auto_sync and on.automated == {"prune": False, "selfHeal": False}
        off = await client.set_auto_sync(APP, False)
        assert not off.auto_sync
    body = argocd.calls_to("PATCH")[-1].body
    assert body is not None and body["patchType"] == "merge"
    assert json.loads(body["patch"]) == {"spec": {"syncPolicy": {"automated": None}}}
    assert argocd.app(APP)["spec"]["syncPolicy"] == {"syncOptions": ["CreateNamespace=false"]}


async def test_sync_to_other_revision_refused_under_auto_sync(argocd: ArgoCDStandIn) -> None:
    argocd.set_auto_sync(APP, True)
    async with ArgoCDClient(argocd.url, TOKEN) as client:
        with pytest.raises(PermanentError, match=re.escape(
                "Cannot sync to 1.5.0: auto-sync currently set to 1.4.0")):
            await client.sync(APP, "1.5.0")


async def test_bad_token_is_401_and_never_logged(argocd: ArgoCDStandIn,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    async with ArgoCDClient(argocd.url, "wrong-token") as client:
        assert "wrong-token" not in repr(client)
        with pytest.raises(PermanentError) as err:
            await client.get_app(APP)
    assert "(401)" in str(err.value) and "invalid session" in str(err.value)
    assert "wrong-token" not in caplog.text and "wrong-token" not in str(err.value)


async def test_missing_app_is_not_found(argocd: ArgoCDStandIn) -> None:
    async with ArgoCDClient(argocd.url, TOKEN) as client:
        with pytest.raises(NotFound, match=re.escape('applications.argoproj.io "nope" not found')):
            await client.get_app("nope")


@pytest.mark.parametrize("name", ["../settings", "Shop", "a/b", "x?y=1", "", "a" * 254])
async def test_invalid_app_name_never_reaches_the_url(argocd: ArgoCDStandIn, name: str) -> None:
    before = len(argocd.calls)
    async with ArgoCDClient(argocd.url, TOKEN) as client:
        with pytest.raises(PermanentError, match="not a valid Argo CD application name"):
            await client.get_app(name)
        with pytest.raises(PermanentError):
            await client.rollback(name, 1)
    assert len(argocd.calls) == before


async def test_unreachable_server_is_retryable() -> None:
    async with ArgoCDClient("http://127.0.0.1:9", TOKEN, timeout=2) as client:
        with pytest.raises(RetryableError, match="Argo CD is unreachable"):
            await client.get_app(APP)


async def test_busy_app_refuses_a_second_operation(argocd: ArgoCDStandIn) -> None:
    async with ArgoCDClient(argocd.url, TOKEN) as client:
        await client.sync(APP, "1.5.0")
        with pytest.raises(PermanentError, match="another operation is already in progress"):
            await client.rollback(APP, 0)
