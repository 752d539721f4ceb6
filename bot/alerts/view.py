"""What front ends show of an alert group, and the board interface they implement.

One message per Alertmanager group: its alerts (firing or resolved), every automation
decision taken for them (ran, shadow, skipped and why), and buttons for people. Slack renders
it as Block Kit updated in place; the console prints it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from bot.markup import bold, clean, clip, code, italic
from bot.messages import clock_time
from bot.reporting import Button, Reporter

__all__ = [
    "AlertBoard", "AlertGroupView", "AlertLine", "GroupText", "RunLine", "group_lines",
    "group_text", "moment",
]

_DECISION_TEXT = {
    "shadow": "shadow run",
    "paused": "skipped (paused)",
    "breaker_open": "skipped (circuit breaker open)",
    "cooldown": "skipped (cooldown)",
    "rate_limited": "skipped (too many runs)",
    "concurrency": "skipped (concurrency limit)",
    "no_target": "not run (no valid target)",
}
_STATUS_TEXT = {
    "pending": "starting",
    "running": "running",
    "succeeded": "succeeded",
    "failed": "failed",
    "refused": "refused",
    "interrupted": "interrupted by a restart, not repeated",
    "awaiting_approval": "waiting for approval",
    "cancelled": "approval request cancelled: the alert resolved",
}
# A decision to run has not always run: it may be starting, waiting for approval, or refused,
# and the line must not say "ran" before it has.
_RUN_TEXT = {
    "pending": "starting",
    "running": "running",
    "succeeded": "ran, succeeded",
    "failed": "ran, failed",
    "refused": "not run: refused",
    "interrupted": "ran, interrupted by a restart, not repeated",
    "awaiting_approval": "waiting for approval, not run yet",
    "cancelled": "not run: approval request cancelled, the alert resolved",
}


@dataclass(frozen=True)
class AlertLine:
    fingerprint: str
    name: str
    status: str  # firing | resolved
    severity: str
    summary: str
    where: str  # "shop-api in staging", "pod x in ns y"
    starts_at: str
    ends_at: str | None

    @property
    def when(self) -> str:
        if self.status == "firing":
            return f"since {moment(self.starts_at)}"
        return f"resolved {moment(self.ends_at)}".strip()


def moment(stamp: str | None, now: datetime | None = None) -> str:
    """An Alertmanager time as people read it: `12:25 UTC` today, `2026-12-03 12:25 UTC`
    another day; nothing for Go's zero time (not set); the text itself if it is not a time."""
    if not stamp:
        return ""
    try:
        at = datetime.fromisoformat(stamp)
    except ValueError:
        return clip(clean(stamp), 40)
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    if at.year <= 1:
        return ""
    return clock_time(at, now or datetime.now(UTC))


@dataclass(frozen=True)
class RunLine:
    runbook: str
    alertname: str
    target: str | None
    environment: str | None
    decision: str
    detail: str
    status: str
    execution_id: str | None
    request_id: str | None

    @property
    def text(self) -> str:
        where = f" on {self.target} in {self.environment}" if self.target and self.environment \
            else (f" in {self.environment}" if self.environment else "")
        if self.decision == "run":
            line = f"{code(self.runbook)}{where}: {_RUN_TEXT.get(self.status, self.status)}"
        else:
            what = _DECISION_TEXT.get(self.decision, self.decision)
            line = f"{code(self.runbook)}{where}: {what}"
        if self.decision == "shadow":
            line += f", {_STATUS_TEXT.get(self.status, self.status)}"
        if self.decision in ("run", "shadow"):
            if self.execution_id:
                line += f" ({self.execution_id})"
            if self.request_id:
                line += f" (request {self.request_id})"
        else:
            line += f": {self.detail}"
        return line


@dataclass
class AlertGroupView:
    group_hash: str
    title: str
    status: str  # firing | resolved
    alerts: list[AlertLine] = field(default_factory=list)
    runs: list[RunLine] = field(default_factory=list)
    buttons: list[Button] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # truncated alerts, breaker opened, ...
    channel: str | None = None
    ts: str | None = None


@dataclass(frozen=True)
class GroupText:
    """An alert group as marked text (`bot/markup.py`), for any front end to lay out."""

    headline: str
    alerts: list[str]
    runs: list[str]
    notes: list[str]


def group_text(view: AlertGroupView, *, max_alerts: int = 15, max_runs: int | None = None,
               value_limit: int | None = None, title_limit: int | None = None) -> GroupText:
    """The group's headline, one line per alert (the first `max_alerts`), the automation
    decisions (the last `max_runs`) and notes; the title, alert names and summaries are cut
    to `title_limit` and `value_limit` when given."""
    def shown(value: str, limit: int | None = value_limit) -> str:
        return clip(value, limit) if limit else value

    firing = sum(1 for a in view.alerts if a.status == "firing")
    head = "FIRING" if view.status == "firing" else "RESOLVED"
    headline = (f"{bold(head)} {shown(view.title, title_limit)} ({firing} firing, "
                f"{len(view.alerts) - firing} resolved)")
    alerts = []
    for alert in view.alerts[:max_alerts]:
        mark = "🔴" if alert.status == "firing" else "🟢"
        summary = f": {shown(alert.summary)}" if alert.summary else ""
        alerts.append(f"{mark} {bold(shown(alert.name))} {alert.where}{summary} "
                      f"{italic(f'({alert.when})')}")
    if len(view.alerts) > max_alerts:
        alerts.append(f"… and {len(view.alerts) - max_alerts} more")
    runs = view.runs[-max_runs:] if max_runs else view.runs
    return GroupText(headline, alerts, [f"• {run.text}" for run in runs], list(view.notes))


def group_lines(view: AlertGroupView) -> list[str]:
    """The whole group as marked lines, for the console."""
    text = group_text(view)
    lines = [text.headline, *text.alerts]
    if text.runs:
        lines += ["Automation:", *text.runs]
    return lines + text.notes


class AlertBoard(Protocol):
    async def show(self, *views: AlertGroupView) -> None:
        """Post each group's message the first time, then update it in place (Slack records
        where it went on the group once it is posted); on Slack, all in one store
        transaction."""

    def reporter(self, view: AlertGroupView) -> Reporter:
        """Where an automatic execution for this group reports (Slack: the group's thread)."""

    async def announce(self, view: AlertGroupView, text: str) -> None:
        """A loud message asking humans to take over (a circuit breaker opened)."""
