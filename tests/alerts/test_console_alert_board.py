"""The console's alert board, as the demo prints alert groups: once per change of its alerts or
automation decisions (not per run progress), with its buttons' commands, and each automatic run
printed whole when it ends, so runs going on side by side do not interleave."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.alerts.console import ConsoleAlertBoard
from bot.alerts.view import AlertGroupView, AlertLine, RunLine, moment
from bot.reporting import Button, ExecutionView, StepView


def crashloop(status: str = "firing", run_status: str = "pending") -> AlertGroupView:
    alert = AlertLine("f1", "KubePodCrashLooping", status, "warning", "Pod is crash looping.",
                      "shop-worker in staging", "2026-01-01T00:00:00Z", None)
    run = RunLine("alert-crashloop", "KubePodCrashLooping", "shop-worker", "staging", "run", "",
                  run_status, "ex-1" if run_status != "pending" else None, None)
    return AlertGroupView(
        group_hash="g1", title="KubePodCrashLooping in staging", status=status, alerts=[alert],
        runs=[run],
        buttons=[Button("Silence 1h", "silence KubePodCrashLooping namespace=shop-staging "
                                      "--for 1h --env staging")])


async def test_group_printed_on_alert_changes_with_its_commands() -> None:
    out: list[str] = []
    board = ConsoleAlertBoard(out.append)
    await board.show(crashloop())
    await board.show(crashloop(run_status="running"))
    await board.show(crashloop(run_status="succeeded"))
    assert len(out) == 1  # the run's progress is its own report's to tell
    assert out[0].splitlines() == [
        "🚨 FIRING KubePodCrashLooping in staging (1 firing, 0 resolved)",
        "🔴 KubePodCrashLooping shop-worker in staging: Pod is crash looping. "
        "(since 2026-01-01 00:00 UTC)",
        "Automation:",
        "• `alert-crashloop` on shop-worker in staging: starting",
        "  [Silence 1h] silence KubePodCrashLooping namespace=shop-staging --for 1h --env staging",
    ]
    assert board.showing("KubePodCrashLooping") and not board.showing("KubePodCrashLooping",
                                                                      "resolved")
    await board.show(crashloop("resolved", "succeeded"))
    assert len(out) == 2 and out[1].startswith("🚨 RESOLVED KubePodCrashLooping in staging")
    assert board.showing("KubePodCrashLooping", "resolved")


async def test_an_automatic_run_is_printed_whole_when_it_ends() -> None:
    out: list[str] = []
    reporter = ConsoleAlertBoard(out.append).reporter(crashloop())
    view = ExecutionView("ex-1", "alert-crashloop", "run alert-crashloop app=shop-worker",
                         "alertmanager", "staging", "shop-worker", False,
                         steps=[StepView("Diagnose", "succeeded", "worker is crash-looping"),
                                StepView("Look again")])
    await reporter.execution(view)
    assert out == []
    view.steps[1] = StepView("Look again", "succeeded", "still crash-looping")
    view.status = "succeeded"
    await reporter.execution(view)
    [text] = out
    lines = text.splitlines()
    assert lines[0].startswith("▶ `run alert-crashloop app=shop-worker` in staging")
    assert "  ✅ Diagnose: worker is crash-looping" in lines
    assert "  ✅ Look again: still crash-looping" in lines
    assert lines[-1].startswith("✅ `run alert-crashloop app=shop-worker` in staging: done")


@pytest.mark.parametrize(("stamp", "shown"), [
    ("2026-12-04T12:25:00.230000+00:00", "12:25 UTC"),  # today: the time
    ("2026-12-04T13:25:07.123456789+01:00", "12:25 UTC"),  # Go's nanoseconds, another zone
    ("2026-12-03T23:59:59Z", "2026-12-03 23:59 UTC"),  # another day: with its date
    ("0001-01-01T00:00:00Z", ""),  # Go's zero time: not set
    (None, ""),
    ("*soon*", "*soon*"),  # not a time: shown as it came, as text
])
def test_alert_times_read_as_people_read_them(stamp: str | None, shown: str) -> None:
    assert moment(stamp, now=datetime(2026, 12, 4, 18, 0, tzinfo=UTC)) == shown
