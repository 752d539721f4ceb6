"""The `silence` command end to end: console trigger, dispatcher, runbook, handler, and the real
Alertmanager holding the silence."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.config import load_settings
from bot.registry import Registry
from bot.services import Services
from tests.conftest import DEMO_CONFIG, dispatch
from tests.support.prometheus import AlertmanagerServer

pytest_plugins = ["tests.support.fixtures_prometheus"]


def listed(server: AlertmanagerServer) -> list[dict[str, Any]]:
    """Silences in force, as Alertmanager itself reports them."""
    items = httpx.get(f"{server.url}/api/v2/silences", timeout=10).json()
    return [s for s in items if s["status"]["state"] != "expired"]


def matchers(silence: dict[str, Any]) -> dict[str, str]:
    assert all(m["isEqual"] and not m["isRegex"] for m in silence["matchers"])
    return {m["name"]: m["value"] for m in silence["matchers"]}


@pytest.fixture
def am(alertmanager: AlertmanagerServer) -> Iterator[AlertmanagerServer]:
    """The session's Alertmanager with no silence in force when the test starts and ends."""

    def expire_all() -> None:
        for item in listed(alertmanager):
            httpx.delete(f"{alertmanager.url}/api/v2/silence/{item['id']}", timeout=10)

    expire_all()
    yield alertmanager
    expire_all()


@pytest.fixture
def svc(am: AlertmanagerServer, kubeconfig: Path, db_url: str) -> Iterator[Services]:
    """The demo world with ALERTMANAGER_URL pointing at the real Alertmanager."""
    settings = load_settings(DEMO_CONFIG, environ={
        "KUBECONFIG": str(kubeconfig), "OPSBOT_DATABASE_URL": db_url,
        "ALERTMANAGER_URL": am.url,
    })
    built = Services.build(settings, registry=Registry.builtin())
    try:
        yield built
    finally:
        built.close()


async def test_silence_creates_it_in_the_environment_namespace(
    svc: Services, am: AlertmanagerServer
) -> None:
    before = datetime.now(UTC)
    outcome, rep = await dispatch(
        svc, 'silence KubePodCrashLooping pod=shop-worker-x --for 1h --reason "fixing it"'
    )
    assert outcome.status == "succeeded", rep.final
    [silence] = listed(am)
    assert matchers(silence) == {
        "alertname": "KubePodCrashLooping", "pod": "shop-worker-x", "namespace": "shop-staging",
    }
    assert silence["createdBy"] == "alice (U0ALICE) via opsbot"
    assert silence["comment"] == f"fixing it (opsbot execution {outcome.execution_id})"
    ends = datetime.fromisoformat(silence["endsAt"].replace("Z", "+00:00"))
    assert before + timedelta(minutes=59) < ends <= datetime.now(UTC) + timedelta(hours=1)

    step = rep.final.steps[0]
    assert re.fullmatch(
        r"silenced KubePodCrashLooping in shop-staging for 1h \(until .*\d\d:\d\d UTC\)",
        step.summary,
    ), step.summary
    fields = dict(step.fields)
    assert fields["Silence id"] == silence["id"]
    assert fields["Matchers"] == ('alertname="KubePodCrashLooping", pod="shop-worker-x", '
                                  'namespace="shop-staging"')
    assert "other environments still notify" in fields["Scope"]
    assert fields["Created by"] == "alice (U0ALICE) via opsbot"
    record = svc.store.get_execution(outcome.execution_id or "")
    assert record is not None
    audit = [r for r in svc.store.export_audit() if r["execution_id"] == outcome.execution_id]
    assert [r["outcome"] for r in audit] == ["started", "succeeded"]
    assert {r["actor"] for r in audit} == {"U0ALICE"}


async def test_prod_silence_needs_no_approval_and_stays_in_prod(
    svc: Services, am: AlertmanagerServer
) -> None:
    outcome, rep = await dispatch(svc, "silence HighErrorRate --for 30m --env prod")
    assert outcome.status == "succeeded", rep.final
    [silence] = listed(am)
    assert matchers(silence) == {"alertname": "HighErrorRate", "namespace": "shop-prod"}
    assert silence["comment"] == f"silenced from opsbot (execution {outcome.execution_id})"


async def test_a_namespace_label_replaces_the_environment_one(
    svc: Services, am: AlertmanagerServer
) -> None:
    outcome, rep = await dispatch(svc, "silence NodeDiskFull namespace=kube-system --for 2h")
    assert outcome.status == "succeeded", rep.final
    [silence] = listed(am)
    assert matchers(silence) == {"alertname": "NodeDiskFull", "namespace": "kube-system"}
    assert "(as asked)" in dict(rep.final.steps[0].fields)["Scope"]


async def test_dry_run_creates_nothing(svc: Services, am: AlertmanagerServer) -> None:
    outcome, rep = await dispatch(
        svc, "silence KubePodCrashLooping pod=shop-worker-x --for 90m --dry-run"
    )
    assert outcome.status == "succeeded", rep.final
    assert listed(am) == []
    step = rep.final.steps[0]
    assert step.summary.startswith(
        "would silence KubePodCrashLooping in shop-staging for 1h30m (until ")
    fields = dict(step.fields)
    assert 'namespace="shop-staging"' in fields["Matchers"]
    assert fields["Created by"] == "alice (U0ALICE) via opsbot"
    assert {"Starts", "Ends"} <= set(fields) and "Silence id" not in fields


@pytest.mark.parametrize(("text", "status", "error"), [
    # Outside 1m..7d is a usage error before anything runs, not a failed execution.
    ("silence KubePodCrashLooping --for 0m", "usage", "is at least 1m; `0m` is shorter"),
    ("silence KubePodCrashLooping --for 30s", "usage", "is at least 1m; `30s` is shorter"),
    ("silence KubePodCrashLooping --for 30d", "usage", "is at most 7d; `30d` is longer"),
    ("silence KubePodCrashLooping --for 7d1m", "usage", "is at most 7d; `7d1m` is longer"),
    ("silence KubePodCrashLooping --for 99999999999d", "usage", "is at most 7d"),
    ("silence KubePodCrashLooping --for ٣h", "usage", "`٣h` is not a duration"),
    ("silence KubePodCrashLooping --for 1h --for 2h", "usage", "`--for` is given twice"),
    ("silence KubePodCrashLooping --for banana", "usage", "`banana` is not a duration"),
    ("silence KubePodCrashLooping bad-label!=x --for 1h", "usage", "is not label=value"),
    ("silence KubePodCrashLooping =x --for 1h", "usage", "is not label=value"),
    ("silence KubePodCrashLooping pod=a pod=b --for 1h", "usage", "given twice"),
    ("silence KubePodCrashLooping alertname=Other --for 1h", "failed",
     "give the alert name once"),
    ("silence KubePodCrashLooping pod=x", "usage", "missing <duration>"),
    ("silence --for 1h", "usage", "missing <alertname>"),
])
async def test_bad_commands_say_why_and_create_nothing(
    svc: Services, am: AlertmanagerServer, text: str, status: str, error: str
) -> None:
    outcome, rep = await dispatch(svc, text)
    assert outcome.status == status
    said = rep.notices[0].text if status == "usage" else rep.final.steps[0].summary
    assert error in said
    assert listed(am) == []
    if status == "usage":  # refused before an execution exists: nothing is audited as a run
        assert outcome.execution_id is None and rep.views == []
        assert list(svc.store.export_audit()) == []


async def test_viewers_may_not_silence(svc: Services, am: AlertmanagerServer) -> None:
    outcome, _ = await dispatch(svc, "silence KubePodCrashLooping --for 1h", user="mallory")
    assert outcome.status == "denied"
    assert listed(am) == []


async def test_without_alertmanager_url_it_says_what_to_set(services: Services) -> None:
    assert services.settings.alertmanager_url is None
    outcome, rep = await dispatch(services, "silence KubePodCrashLooping --for 1h")
    assert outcome.status == "failed"
    assert "set ALERTMANAGER_URL" in rep.final.steps[0].summary
