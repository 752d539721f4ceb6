"""Alert processing: dedup, routing, guardrails, shadow mode, pause/resume, recovery, bursts.

Notifications are committed to the store as the intake commits them, then processed by the
services' alert worker; runs go through the real dispatcher against the simulated cluster.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bot.alerts.payload import parse_notification
from bot.config import Settings
from bot.reporting import ExecutionView, Notice
from bot.services import Services
from bot.store import Store
from bot.store.alerts import group_hash
from bot.trigger import Trigger
from simcluster import SimCluster
from tests.alerts.conftest import Clock, RecordingAlertBoard, alert_settings_for
from tests.support.alert_payloads import alert, notification, to_bytes

WORKER_POD = "shop-worker-5d8f7c9b6-x2x4q"
API_POD = "shop-api-7c9d8f6b5-abcde"


def crashloop(pod: str = WORKER_POD, *, starts_at: str = "2026-11-26T11:00:00Z",
              status: str = "firing", **labels: str) -> dict[str, Any]:
    return alert({"alertname": "TestCrashLoop", "severity": "warning",
                  "namespace": "shop-staging", "pod": pod, **labels},
                 starts_at=starts_at, status=status)


def stuck(deployment: str = "shop-api", starts_at: str = "2026-11-26T11:00:00Z",
          namespace: str = "shop-staging") -> dict[str, Any]:
    return alert({"alertname": "TestStuck", "namespace": namespace, "deployment": deployment},
                 starts_at=starts_at)


async def deliver(services: Services, payload: dict[str, Any]) -> str:
    """What the intake does (validate, commit), then let the worker process everything."""
    parsed = parse_notification(to_bytes(payload))
    nid = await asyncio.to_thread(
        services.store.record_notification, group_key=parsed.group_key,
        receiver=parsed.receiver, status=parsed.status, payload=payload)
    await services.alerts.wait_idle()
    return nid


def runs(services: Services, payload: dict[str, Any]) -> list[Any]:
    return services.store.alert_runs(group_hash(payload["groupKey"]))


class Replies:
    def __init__(self) -> None:
        self.views: list[ExecutionView] = []
        self.notices: list[Notice] = []

    async def execution(self, view: ExecutionView) -> None:
        self.views.append(view)

    async def notice(self, notice: Notice) -> None:
        self.notices.append(notice)


async def command(services: Services, user: str, text: str) -> Replies:
    replies = Replies()
    await services.dispatcher.dispatch(
        Trigger(source="console", actor=user, text=text), replies)
    return replies


def build(sim: SimCluster, tmp_path: Path, clock: Clock, board: RecordingAlertBoard,
          **alerts: Any) -> Services:
    settings: Settings = alert_settings_for(sim, tmp_path, **alerts)
    store = Store.open(settings.database_url or "", clock=clock)
    return Services.build(settings, store=store, alert_board=board)


async def test_a_firing_alert_runs_its_runbook_once_and_shows_the_group(
        alert_services: Services, board: RecordingAlertBoard) -> None:
    payload = notification([crashloop()])
    await deliver(alert_services, payload)
    [run] = runs(alert_services, payload)
    assert (run.runbook, run.target, run.environment, run.decision, run.status) == (
        "test-diag", "shop-worker", "staging", "run", "succeeded")
    execution = board.executions[run.execution_id]
    assert execution.status == "succeeded" and execution.actor == "alertmanager"
    assert "OOMKilled" in " ".join(s.summary for s in execution.steps)
    view = board.last()
    assert view.status == "firing" and [a.where for a in view.alerts] == ["shop-worker in staging"]
    assert "ran, succeeded" in view.runs[0].text
    labels = {b.label: b.command for b in view.buttons}
    assert labels["Diagnose shop-worker"] == "diag shop-worker --env staging"
    assert labels["Roll back shop-worker"] == "rollback shop-worker --env staging"
    assert labels["Silence 1h"] == (f"silence TestCrashLoop namespace=shop-staging pod={WORKER_POD}"
                                    " --for 1h --env staging")
    audit = alert_services.store.audit_records(limit=50)
    decided = [r for r in audit if r["outcome"] == "automation_run"]
    assert decided and decided[0]["source"] == "alert" and decided[0]["target"] == "shop-worker"


async def test_redeliveries_and_repeats_of_one_alert_state_start_nothing_new(
        alert_services: Services, board: RecordingAlertBoard) -> None:
    payload = notification([crashloop()])
    await deliver(alert_services, payload)
    await deliver(alert_services, payload)  # Alertmanager retried a delivery
    repeat = notification([crashloop()])  # repeat_interval: same alert state, new notification
    await deliver(alert_services, repeat)
    assert len(runs(alert_services, payload)) == 1
    assert len(board.executions) == 1


async def test_resolved_updates_the_group_and_runs_nothing(
        alert_services: Services, board: RecordingAlertBoard) -> None:
    await deliver(alert_services, notification([crashloop()]))
    resolved = notification([crashloop(status="resolved")])
    await deliver(alert_services, resolved)
    view = board.last()
    assert view.status == "resolved" and view.alerts[0].status == "resolved"
    assert len(view.runs) == 1 and "succeeded" in view.runs[0].text  # what the firing started
    assert len(board.executions) == 1
    assert not [b for b in view.buttons if b.label.startswith("Silence")]


async def test_cooldown_then_rate_limit_per_runbook_and_target(
        alert_services: Services, clock: Clock) -> None:
    decisions = []
    for minute, gap in enumerate([0, 5, 11, 11, 11]):
        clock.advance(minutes=gap)
        payload = notification([crashloop(starts_at=f"2026-11-26T11:{minute:02d}:00Z")])
        await deliver(alert_services, payload)
        decisions.append(runs(alert_services, payload)[-1].decision)
    # cooldown 10m, at most 2 runs per hour (test-diag's trigger)
    assert decisions == ["run", "cooldown", "run", "rate_limited", "rate_limited"]
    clock.advance(minutes=61)
    payload = notification([crashloop(starts_at="2026-11-26T12:30:00Z")])
    await deliver(alert_services, payload)
    assert runs(alert_services, payload)[-1].decision == "run"
    # another target is counted on its own
    other = notification([crashloop(API_POD, starts_at="2026-11-26T12:31:00Z")])
    await deliver(alert_services, other)
    assert [r.decision for r in runs(alert_services, other) if r.target == "shop-api"] == ["run"]


async def test_global_concurrency_limit(alert_sim: SimCluster, tmp_path: Path, clock: Clock,
                                        board: RecordingAlertBoard) -> None:
    alert_sim.faults.inject("PATCH", r"/deployments/", status=None, times=None,
                            delay_seconds=1.5)
    services = build(alert_sim, tmp_path, clock, board, max_concurrent=1)
    try:
        payload = notification([stuck("shop-api"), stuck("shop-web")],
                               group_labels={"alertname": "TestStuck"})
        await deliver(services, payload)
        decisions = sorted((r.target, r.decision) for r in runs(services, payload))
        assert decisions == [("shop-api", "run"), ("shop-web", "concurrency")]
        skipped = next(r for r in runs(services, payload) if r.decision == "concurrency")
        assert "limit 1" in skipped.detail
    finally:
        services.close()


async def test_refused_remediations_do_not_open_the_circuit_breaker(
        alert_sim: SimCluster, tmp_path: Path, clock: Clock, board: RecordingAlertBoard) -> None:
    """A run refused before it changed anything (a paused Deployment is not restarted) is not
    a failed remediation: the breaker, which stops automation that keeps breaking things,
    neither counts nor resets on it."""
    services = build(alert_sim, tmp_path, clock, board, breaker_failures=2)
    services.kube.for_context(None).apps.patch_namespaced_deployment(
        "shop-api", "shop-staging", {"spec": {"paused": True}})
    try:
        ran = await stuck_three_times(services, clock)
        assert [(run.decision, run.status) for run in ran] == [("run", "refused")] * 3
        assert all(board.executions[run.execution_id].status == "refused" for run in ran)
        assert board.announcements == []
    finally:
        services.close()


async def stuck_three_times(services: Services, clock: Clock) -> list[Any]:
    """TestStuck fires anew three times, 5 s apart; the last run of each notification."""
    ran = []
    for minute in range(3):
        clock.advance(seconds=5)
        payload = notification([stuck(starts_at=f"2026-11-26T11:0{minute}:00Z")])
        await deliver(services, payload)
        ran.append(runs(services, payload)[-1])
    return ran


async def test_circuit_breaker_opens_after_failed_remediations_and_resume_closes_it(
        alert_sim: SimCluster, tmp_path: Path, clock: Clock, board: RecordingAlertBoard) -> None:
    services = build(alert_sim, tmp_path, clock, board, breaker_failures=2)
    forbidden = alert_sim.faults.inject("PATCH", r"/deployments/shop-api", status=403,
                                        times=None)
    try:
        decisions = [(run.decision, run.status) for run in await stuck_three_times(services, clock)]
        assert decisions == [("run", "failed"), ("run", "failed"),
                             ("breaker_open", "skipped")]
        assert len(board.announcements) == 1
        assert "shop-api in staging" in board.announcements[0]
        assert "automation resume --env staging" in board.announcements[0]
        status = await command(services, "U0BOB", "automation status")
        assert "Breaker open: shop-api in staging" in str(status.views[-1].steps[0].fields)
        output = status.views[-1].steps[0].output or ""
        assert "TestStuck -> test-restart on shop-api in staging: breaker_open" in output
        assert "TestStuck -> test-restart on shop-api in staging: run (failed)" in output
        # another target is not affected
        web = notification([stuck("shop-web", starts_at="2026-11-26T11:05:00Z")])
        await deliver(services, web)
        assert runs(services, web)[-1].decision == "run"

        forbidden.active = False
        replies = await command(services, "U0BOB", "automation resume --env staging")
        assert "circuit breakers closed for shop-api in staging" in replies.views[-1].summary \
            or "circuit breakers closed for shop-api in staging" in \
            replies.views[-1].steps[0].summary
        clock.advance(seconds=5)
        again = notification([stuck(starts_at="2026-11-26T11:09:00Z")])
        await deliver(services, again)
        assert (runs(services, again)[-1].decision, runs(services, again)[-1].status) == (
            "run", "succeeded")
        outcomes = [r["outcome"] for r in services.store.audit_records(limit=100)]
        assert "breaker_opened" in outcomes and "automation_breaker_open" in outcomes
    finally:
        services.close()


async def test_shadow_mode_posts_a_dry_run_and_changes_nothing(
        alert_services: Services, board: RecordingAlertBoard, alert_sim: SimCluster) -> None:
    payload = notification([alert({"alertname": "TestThrottled", "namespace": "shop-staging",
                                   "deployment": "shop-api"})])
    await deliver(alert_services, payload)
    [run] = runs(alert_services, payload)
    assert (run.decision, run.status) == ("shadow", "succeeded")
    execution = board.executions[run.execution_id]
    assert execution.dry_run and "--dry-run" in execution.command
    deployment = alert_sim.get("/apis/apps/v1/namespaces/shop-staging/deployments/shop-api")
    assert deployment["spec"]["replicas"] == 3
    assert [b.label for b in execution.buttons] == ["Run it"]  # a human may run it for real


async def test_modes_in_config_override_the_runbook(alert_sim: SimCluster, tmp_path: Path,
                                                    clock: Clock,
                                                    board: RecordingAlertBoard) -> None:
    services = build(alert_sim, tmp_path, clock, board, modes={"test-restart": "shadow"})
    try:
        payload = notification([stuck()])
        await deliver(services, payload)
        assert runs(services, payload)[-1].decision == "shadow"
    finally:
        services.close()


async def test_pause_and_resume(alert_services: Services, clock: Clock) -> None:
    paused = await command(alert_services, "U0BOB", "automation pause --for 1h")
    assert "paused in every environment" in paused.views[-1].steps[0].summary
    first = notification([stuck(starts_at="2026-11-26T11:00:00Z")])
    await deliver(alert_services, first)
    [run] = runs(alert_services, first)
    assert run.decision == "paused" and "everywhere" in run.detail and "bob" in run.detail
    await command(alert_services, "U0BOB", "automation resume")
    second = notification([stuck(starts_at="2026-11-26T11:01:00Z")])
    await deliver(alert_services, second)
    assert runs(alert_services, second)[-1].decision == "run"
    # a pause of prod leaves staging alone; an expired pause no longer holds
    await command(alert_services, "U0BOB", "automation pause --env prod --for 10m")
    clock.advance(seconds=5)
    third = notification([stuck(starts_at="2026-11-26T11:02:00Z")])
    await deliver(alert_services, third)
    assert runs(alert_services, third)[-1].decision == "run"
    await command(alert_services, "U0BOB", "automation pause --env staging --for 10m")
    clock.advance(minutes=11)
    fourth = notification([stuck(starts_at="2026-11-26T11:03:00Z")])
    await deliver(alert_services, fourth)
    assert runs(alert_services, fourth)[-1].decision == "run"


async def test_only_allowed_people_pause_automation(alert_services: Services) -> None:
    replies = await command(alert_services, "U0MALLORY", "automation pause")
    assert replies.notices and replies.notices[0].kind == "denied"
    assert alert_services.store.automation_status().pauses == []


@pytest.mark.parametrize("labels", [
    {"namespace": "shop-qa"},  # not a configured environment
    {"namespace": "shop-staging; rm -rf /"},
    {"namespace": "shop-staging", "deployment": "{{ 7*7 }}"},
    {"namespace": "shop-staging", "deployment": "shop-api\n"},
    {"namespace": "shop-staging", "pod": "../../etc/passwd"},
    {"namespace": "shop-staging", "deployment": "payments"},  # not a configured app
    {},
])
async def test_hostile_or_unknown_targets_run_nothing(
        alert_services: Services, board: RecordingAlertBoard, labels: dict[str, str]) -> None:
    payload = notification([alert({"alertname": "TestStuck", **labels})],
                           group_labels={"alertname": "TestStuck"})
    await deliver(alert_services, payload)
    [run] = runs(alert_services, payload)
    assert run.decision == "no_target" and run.target is None and run.status == "skipped"
    assert board.executions == {}
    assert "{{" not in board.last().title or "49" not in board.last().title


async def test_template_syntax_in_alert_text_stays_text(
        alert_services: Services, board: RecordingAlertBoard) -> None:
    hostile = alert({"alertname": "TestCrashLoop", "severity": "warning",
                     "namespace": "shop-staging", "pod": WORKER_POD},
                    annotations={"summary": "{{ 7*7 }} {% for x in [1] %}x{% endfor %} <!here>"})
    await deliver(alert_services, notification([hostile]))
    view = board.last()
    assert view.alerts[0].summary == "{{ 7*7 }} {% for x in [1] %}x{% endfor %} <!here>"


async def test_truncated_alerts_are_noted(alert_services: Services,
                                          board: RecordingAlertBoard) -> None:
    await deliver(alert_services, notification([crashloop()], truncated=12))
    assert any("12 more alerts" in note for note in board.last().notes)


async def test_a_burst_of_groups_decides_once_per_alert(
        alert_sim: SimCluster, tmp_path: Path, clock: Clock, board: RecordingAlertBoard) -> None:
    services = build(alert_sim, tmp_path, clock, board, max_concurrent=2)
    try:
        payloads = []
        for i in range(30):
            payload = notification(
                [crashloop(f"shop-worker-5d8f7c9b6-b{i:04d}", starts_at="2026-11-26T11:00:00Z"),
                 stuck("shop-web" if i % 2 else "shop-api",
                       starts_at=f"2026-11-26T11:{i:02d}:00Z")],
                group_labels={"alertname": f"Burst{i}"})
            payloads.append(payload)
        for payload in payloads:  # committed as fast as the intake would, then processed
            parsed = parse_notification(to_bytes(payload))
            services.store.record_notification(group_key=parsed.group_key, receiver="opsbot",
                                               status="firing", payload=payload)
            services.store.record_notification(group_key=parsed.group_key, receiver="opsbot",
                                               status="firing", payload=payload)  # retried
        await services.alerts.wait_idle()
        decided = [r for p in payloads for r in runs(services, p)]
        assert len(decided) == 60  # one decision per alert and runbook, despite redeliveries
        per_target = Counter((r.runbook, r.target) for r in decided if r.decision == "run")
        assert per_target[("test-diag", "shop-worker")] == 1  # then cooldown
        assert Counter(r.decision for r in decided)["cooldown"] >= 29
        assert len(board.executions) == sum(per_target.values())
        assert services.store.unprocessed_notifications() == []
        assert {v.group_hash for v in board.shown} == {group_hash(p["groupKey"])
                                                       for p in payloads}
    finally:
        services.close()


def record(services: Services, *payloads: dict[str, Any]) -> list[str]:
    """Commit `payloads` as the intake would, without processing them."""
    ids = []
    for payload in payloads:
        parsed = parse_notification(to_bytes(payload))
        ids.append(services.store.record_notification(
            group_key=parsed.group_key, receiver=parsed.receiver, status=parsed.status,
            payload=payload))
    return ids


async def test_notifications_waiting_together_are_processed_as_one_batch(
        alert_services: Services, board: RecordingAlertBoard) -> None:
    # A backlog (a storm, a restart) is processed in batches: each group's message is shown
    # once, as the batch leaves it, not once per notification; dedup and decisions hold
    # across the batch as they do one notification at a time.
    labels = {"alertname": "TestUnrouted", "namespace": "shop-staging", "pod": "web-0"}
    fired = notification([alert(labels, starts_at="2026-11-26T11:00:00Z")])
    repeated = notification([alert(labels, starts_at="2026-11-26T11:00:00Z")])
    resolved = notification([alert(labels, starts_at="2026-11-26T11:00:00Z",
                                   status="resolved")])
    crashing = notification([crashloop()])
    record(alert_services, fired, repeated, resolved, crashing, crashing)
    await alert_services.alerts.wait_idle()

    quiet = [v for v in board.shown if v.group_hash == group_hash(fired["groupKey"])]
    assert len(quiet) == 1
    assert quiet[0].status == "resolved" and [a.status for a in quiet[0].alerts] == ["resolved"]
    assert runs(alert_services, fired) == []
    [run] = runs(alert_services, crashing)  # the redelivery decided nothing more
    assert (run.decision, run.status) == ("run", "succeeded")
    assert alert_services.store.unprocessed_notifications() == []
    decided = [r for r in alert_services.store.audit_records(limit=50)
               if r["outcome"].startswith("automation_")]
    assert [r["details"]["run"] for r in decided] == [run.id]


async def test_batches_stay_small_while_requests_are_in_flight(
        alert_services: Services, board: RecordingAlertBoard) -> None:
    # Twelve groups waiting: while a request is in flight (processing goes once its deferral
    # ran out) batches of 5, so the request's answer waits less for the loop; then 25.
    def unrouted(i: int, name: str) -> dict[str, Any]:  # no runbook: nothing else shows
        return notification([alert({"alertname": "TestUnrouted", "pod": f"web-{i}"})],
                            group_labels={"alertname": f"{name}{i}"})

    payloads = [unrouted(i, "Busy") for i in range(12)]
    foreground = alert_services.alerts.foreground
    foreground.max_defer_s = 0.0
    record(alert_services, *payloads)
    foreground.begin()  # a request in flight
    try:
        await alert_services.alerts.drain()
    finally:
        foreground.end()
    assert board.calls == [5, 5, 2]
    record(alert_services, *[unrouted(i, "Quiet") for i in range(12)])
    await asyncio.sleep(foreground.quiet_s)
    await alert_services.alerts.drain()
    assert board.calls == [5, 5, 2, 12]


class BreaksOnOneAlert(Store):
    """A store on which deciding about one alert fails, as a defect in processing would."""

    fingerprint: str

    def decide_alert_runs(self, asked: Any) -> Any:
        if any(one.fingerprint == self.fingerprint for one in asked):
            raise RuntimeError("a defect meets this alert")
        return super().decide_alert_runs(asked)


async def test_a_notification_that_breaks_processing_is_skipped_alone(
        alert_sim: SimCluster, tmp_path: Path, clock: Clock, board: RecordingAlertBoard,
        caplog: pytest.LogCaptureFixture) -> None:
    settings = alert_settings_for(alert_sim, tmp_path)
    store = BreaksOnOneAlert.open(settings.database_url or "", clock=clock)
    assert isinstance(store, BreaksOnOneAlert)
    services = Services.build(settings, store=store, alert_board=board)
    try:
        before = crashloop("shop-worker-5d8f7c9b6-before")
        broken = crashloop("shop-worker-5d8f7c9b6-broken",
                           starts_at="2026-11-26T11:05:00Z")
        after = stuck()
        store.fingerprint = broken["fingerprint"]
        payloads = [notification([before], group_labels={"alertname": "Before"}),
                    notification([broken], group_labels={"alertname": "Broken"}),
                    notification([after])]
        ids = record(services, *payloads)
        await services.alerts.wait_idle()
        assert [len(runs(services, p)) for p in payloads] == [1, 0, 1]
        assert services.store.unprocessed_notifications() == []
        skipped = [r for r in caplog.records if "could not be processed" in r.getMessage()]
        assert [r.getMessage() for r in skipped] == [
            f"notification {ids[1]} could not be processed; skipped"]
    finally:
        services.close()


async def test_a_restart_reports_unfinished_runs_and_never_repeats_them(
        alert_sim: SimCluster, tmp_path: Path, clock: Clock) -> None:
    first_board = RecordingAlertBoard()
    services = build(alert_sim, tmp_path, clock, first_board)
    payload = notification([stuck()])
    parsed = parse_notification(to_bytes(payload))
    # A process decided to run, then died before the run started.
    services.store.decide_alert_run(
        state_key=parsed.alerts[0].state_key, group_key=parsed.group_key,
        fingerprint=parsed.alerts[0].fingerprint, alertname="TestStuck", runbook="test-restart",
        environment="staging", target="shop-api", mutating=True, guardrails=None,
        problem=None)
    services.store.update_alert_group(group_key=parsed.group_key, receiver="opsbot",
                                      alerts={})
    with services.store.sessions() as session, session.begin():
        from bot.store.models import AlertRunRow
        row = session.query(AlertRunRow).one()
        row.decision, row.status, row.finished_at = "run", "pending", None
    # ... and its notification was stored but never marked processed.
    services.store.record_notification(group_key=parsed.group_key, receiver="opsbot",
                                       status="firing", payload=payload)
    services.close()

    board = RecordingAlertBoard()
    restarted = build(alert_sim, tmp_path, clock, board)
    try:
        await restarted.recover()
        await restarted.start(alerts=True)
        await restarted.alerts.wait_idle()
        [run] = runs(restarted, payload)
        assert (run.decision, run.status) == ("run", "interrupted")
        assert board.executions == {}  # not started again
        assert "interrupted by a restart, not repeated" in board.last().runs[0].text
        assert restarted.store.unprocessed_notifications() == []
        deployment = alert_sim.get("/apis/apps/v1/namespaces/shop-staging/deployments/shop-api")
        annotations = deployment["spec"]["template"]["metadata"].get("annotations") or {}
        assert "kubectl.kubernetes.io/restartedAt" not in annotations
    finally:
        await restarted.stop()
        restarted.close()


async def test_an_alert_run_in_prod_waits_for_approval(
        alert_services: Services, board: RecordingAlertBoard) -> None:
    payload = notification([stuck(namespace="shop-prod")])
    await deliver(alert_services, payload)
    [run] = runs(alert_services, payload)
    assert (run.decision, run.status) == ("run", "awaiting_approval") and run.request_id
    request = alert_services.store.get_request(run.request_id)
    assert request is not None and request.source == "alert"
    assert request.command == "run test-restart app=shop-api --env prod"
    assert board.executions == {}
    # It read "ran, waiting for approval" while nothing had run.
    line = board.last().runs[0].text
    assert "waiting for approval, not run yet" in line and "ran" not in line



async def test_an_approved_alert_run_runs_the_plan_its_approvers_saw(
        alert_services: Services) -> None:
    """The approval request keeps the alert the run was started for: once approved, the run
    renders the same steps (here one that only alert-started runs take), not a plan without
    the alert that would void the approval as drifted."""
    payload = notification([alert({"alertname": "TestNoted", "namespace": "shop-prod",
                                   "deployment": "shop-api"})])
    await deliver(alert_services, payload)
    [run] = runs(alert_services, payload)
    request = alert_services.store.get_request(run.request_id or "")
    assert request is not None and request.context["alert"]["name"] == "TestNoted"
    replies = Replies()
    outcome = await alert_services.dispatcher.dispatch(
        Trigger(source="console", actor="U0BOB", text=f"approve {request.id}"), replies)
    assert outcome.status == "succeeded", replies.notices
    done = alert_services.store.get_request(request.id)
    assert done is not None and done.status == "executed" and done.execution_id
    execution = alert_services.store.get_execution(done.execution_id)
    assert execution is not None
    assert [(s.name, s.status) for s in execution.steps] == [
        ("Look first", "succeeded"), ("Restart", "succeeded")]


async def test_a_resolved_alert_withdraws_the_approval_request_it_opened(
        alert_services: Services, board: RecordingAlertBoard) -> None:
    firing = notification([stuck(namespace="shop-prod")])
    await deliver(alert_services, firing)
    [run] = runs(alert_services, firing)
    assert run.request_id is not None
    resolved = dict(stuck(namespace="shop-prod"), status="resolved",
                    endsAt="2026-11-26T11:30:00Z")
    await deliver(alert_services, notification([resolved]))
    [run] = runs(alert_services, firing)
    assert run.status == "cancelled"
    request = alert_services.store.get_request(run.request_id or "")
    assert request is not None and request.status == "cancelled"
    line = board.last().runs[0].text
    assert "not run: approval request cancelled, the alert resolved" in line
    assert "ran" not in line
    assert board.executions == {}



async def test_the_group_message_links_the_apps_dashboard_and_the_alerts_sources(
        alert_sim: SimCluster, tmp_path: Path, clock: Clock,
        board: RecordingAlertBoard) -> None:
    from bot.config import GrafanaConfig

    settings = alert_settings_for(alert_sim, tmp_path)
    settings = settings.model_copy(update={"grafana": GrafanaConfig(
        url="https://grafana.example", dashboard="apps-golden")})
    services = Services.build(settings, store=Store.open(settings.database_url or "",
                                                          clock=clock), alert_board=board)
    try:
        crash = crashloop()
        crash["annotations"]["runbook_url"] = "https://wiki.example/crashloop"
        await deliver(services, notification([crash]))
        [links] = [n for n in board.last().notes if n.startswith("Grafana: ")]
        grafana, prometheus, runbook = links.split(" · ")
        # from 5 minutes (grafana.margin_seconds) before the alert began, until now
        assert grafana == ("Grafana: https://grafana.example/d/apps-golden?orgId=1"
                           "&from=1795690500000&to=now&var-namespace=shop-staging"
                           "&var-app=shop-worker")
        assert prometheus == "Prometheus: http://prometheus.example/graph?g0.expr=up"
        assert runbook == "Runbook: https://wiki.example/crashloop"
    finally:
        services.close()
