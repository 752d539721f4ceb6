"""One shape for everything that can start work: slash commands, buttons, console, alerts
and schedules."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

__all__ = ["SOURCES", "Source", "Trigger"]

Source = Literal["slack", "console", "alert", "schedule"]
SOURCES: tuple[str, ...] = ("slack", "console", "alert", "schedule")


@dataclass(frozen=True)
class Trigger:
    """What arrived, reduced to who asked, what they typed, and where to answer."""

    source: Source
    actor: str  # a Slack user id; console handles are resolved to ids before this
    text: str  # the command text after the slash command
    channel: str | None = None
    delivery_id: str | None = None  # dedup key of the delivery (signed request, alert state)
    via: str = "command"  # "command" | "button" | "approval" | ...
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    # Claimed and queued in the store before it was acked: its work starts by marking the
    # queued trigger started (one caller wins), not by claiming the delivery.
    queued: bool = False
