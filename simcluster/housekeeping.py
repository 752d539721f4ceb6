"""Cluster housekeeping that is not tied to one kind: events expire after an hour of silence,
as the API server's event TTL does, so the seeded world shows only recent events."""

from __future__ import annotations

from .clock import parse_time
from .controllers import BUILTINS, Ctx

EVENT_TTL_SECONDS = 3600


@BUILTINS.every_pass(name="event-ttl", order=90)
def expire_events(ctx: Ctx) -> None:
    now = ctx.now()
    for event in ctx.list("", "Event"):
        stamp = (event.get("lastTimestamp") or event.get("eventTime")
                 or event["metadata"].get("creationTimestamp"))
        if stamp and (now - parse_time(stamp)).total_seconds() > EVENT_TTL_SECONDS:
            ctx.delete(event)
