"""The common shape of an alert diagnosis: what, since when, likely cause, evidence and links.

Alert runbooks pass the alert to their diagnosis step as `alert: "{{ alert }}"` (None when a
person runs the runbook by hand); `diagnosis()` turns a finding into the step's Result so every
built-in alert runbook reads the same at 3 a.m.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.messages import rough_span
from bot.registry import Params, Result

__all__ = ["AlertParams", "ago", "diagnosis", "parse_time"]


class AlertParams(Params):
    """Params of a diagnosis handler: the alert that started the run, if any."""

    alert: dict[str, Any] | None = None


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    """`14:03 UTC (25 min ago)`; "unknown" without a time."""
    if moment is None:
        return "unknown"
    now = now or datetime.now(UTC)
    span = rough_span(max(timedelta(0), now - moment))
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC ({span} ago)"


def diagnosis(
    *,
    what: str,
    cause: str,
    alert: Mapping[str, Any] | None = None,
    since: datetime | None = None,
    evidence: Sequence[tuple[str, str]] = (),
    output: str | None = None,
    data: Mapping[str, Any] | None = None,
    ok: bool = True,
) -> Result:
    """One Result for an alert diagnosis.

    `since` defaults to the alert's start; links come from the alert (Prometheus graph, Grafana,
    runbook URL), so a diagnosis run by hand has none. `ok=False` only when the diagnosis itself
    could not be made, never because the incident is real.
    """
    started = since or parse_time((alert or {}).get("starts_at"))
    fields: list[tuple[str, str]] = [("What", what), ("Since", ago(started)),
                                     ("Likely cause", cause), *evidence]
    links = (alert or {}).get("links") or {}
    for key, label in (("prometheus", "Prometheus graph"), ("grafana", "Grafana dashboard"),
                       ("runbook", "Runbook")):
        if links.get(key):
            fields.append((label, str(links[key])))
    return Result(
        summary=f"{what}; likely cause: {cause}",
        fields=tuple(fields),
        output=output,
        ok=ok,
        data={"cause": cause, "since": started.isoformat() if started else None, **(data or {})},
    )
