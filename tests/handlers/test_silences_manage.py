"""`silences [--app A]` and `unsilence <id>` end to end: console trigger, dispatcher, runbook,
handler, and the real Alertmanager."""

from __future__ import annotations

import pytest

from bot.services import Services
from tests.conftest import dispatch
from tests.handlers import test_silence
from tests.handlers.test_silence import listed
from tests.support.prometheus import AlertmanagerServer

pytest_plugins = ["tests.support.fixtures_prometheus"]

# The silence tests' fixtures: the session's Alertmanager with no silence in force, and the
# demo world pointed at it.
am = test_silence.am
svc = test_silence.svc


async def _silence(svc: Services, text: str) -> str:
    outcome, rep = await dispatch(svc, text)
    assert outcome.status == "succeeded", rep.final
    fields = dict(rep.final.steps[0].fields)
    return fields["Silence id"]


async def test_silences_lists_and_filters_by_app(svc: Services, am: AlertmanagerServer) -> None:
    api = await _silence(svc, 'silence KubePodCrashLooping deployment=shop-api --for 2h '
                              '--reason "deploy in progress"')
    pod = await _silence(svc, "silence KubePodCrashLooping pod=shop-worker-7d9f --for 1h")
    prod = await _silence(svc, "silence KubePodCrashLooping deployment=shop-api --for 1h "
                               "--env prod")
    outcome, rep = await dispatch(svc, "silences", "mallory")
    assert outcome.status == "succeeded"
    step = rep.final.steps[0]
    assert step.summary == "3 active silences in Alertmanager"
    ids = [name for name, _ in step.fields]
    assert ids[0] == api  # the latest to end first
    assert set(ids) == {api, pod, prod}
    line = dict(step.fields)[api]
    assert 'alertname="KubePodCrashLooping"' in line and 'deployment="shop-api"' in line
    assert "by alice (U0ALICE) via opsbot" in line and "until" in line
    assert "deploy in progress" in line

    # --app: only silences that can match the app's alerts in that environment.
    _, rep = await dispatch(svc, "silences --app shop-api", "mallory")
    assert [name for name, _ in rep.final.steps[0].fields] == [api]
    _, rep = await dispatch(svc, "silences --app shop-api --env prod", "mallory")
    assert [name for name, _ in rep.final.steps[0].fields] == [prod]
    _, rep = await dispatch(svc, "silences --app shop-worker", "mallory")
    assert [name for name, _ in rep.final.steps[0].fields] == [pod]
    _, rep = await dispatch(svc, "silences --app shop-web", "mallory")
    assert rep.final.steps[0].summary == "no active silences for shop-web in `staging`"


async def test_unsilence_expires_it_and_is_audited(svc: Services,
                                                   am: AlertmanagerServer) -> None:
    sid = await _silence(svc, "silence KubePodCrashLooping deployment=shop-api --for 1h")
    dry, rep = await dispatch(svc, f"unsilence {sid} --dry-run")
    assert dry.status == "succeeded" and "would expire" in rep.final.steps[0].summary
    assert [s["id"] for s in listed(am)] == [sid]

    outcome, rep = await dispatch(svc, f"unsilence {sid}")
    assert outcome.status == "succeeded", rep.final
    assert rep.final.steps[0].summary == f"expired silence `{sid}`: its alerts notify again"
    assert listed(am) == []
    audit = [(r["actor"], r["outcome"], r["command"]) for r in svc.store.export_audit()
             if r["execution_id"] == outcome.execution_id]
    assert ("U0ALICE", "succeeded", f"unsilence {sid}") in audit
    [made] = svc.store.recent_silences()
    assert (made.id, made.expired_by) == (sid, "U0ALICE")

    again, rep = await dispatch(svc, f"unsilence {sid}")
    assert again.status == "succeeded" and "already ended" in rep.final.steps[0].summary
    unknown = "00000000-0000-4000-8000-000000000000"
    missing, rep = await dispatch(svc, f"unsilence {unknown}")
    assert missing.status == "failed" and "has no silence" in rep.final.steps[0].summary


@pytest.mark.parametrize("bad", ["../../api/v2/status", "not-a-uuid", "%2e%2e",
                                 "0b9ea2a5-5a7c-4ad2-8b7e-0f2c0a0f5d1"])
async def test_unsilence_takes_only_a_uuid(svc: Services, am: AlertmanagerServer,
                                           bad: str) -> None:
    outcome, rep = await dispatch(svc, f"unsilence {bad}")
    assert outcome.status == "usage" and "does not match" in rep.notices[0].text
    assert svc.store.recent_executions() == []  # nothing ran, nothing reached Alertmanager


async def test_viewers_may_list_but_not_expire(svc: Services, am: AlertmanagerServer) -> None:
    sid = await _silence(svc, "silence KubePodCrashLooping deployment=shop-api --for 1h")
    outcome, _ = await dispatch(svc, f"unsilence {sid}", "mallory")
    assert outcome.status == "denied"
    assert [s["id"] for s in listed(am)] == [sid]
