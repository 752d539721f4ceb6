"""The Grafana dashboard field that status, diag, metrics and deploy results carry when
`grafana.url` and a dashboard for the app are configured."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot import messages
from bot.grafana import dashboard_link
from bot.registry import HandlerContext

__all__ = ["RECENT", "dashboard_field"]

RECENT = timedelta(hours=1)  # status and diag look at the last hour


def dashboard_field(ctx: HandlerContext, start: datetime | None = None,
                    end: datetime | None = None) -> tuple[tuple[str, str], ...]:
    """`(("Grafana", url),)` for the app over start..end (default the last hour), or `()`."""
    end = end or datetime.now(UTC)
    link = dashboard_link(ctx.settings, ctx.app, ctx.namespace, start or end - RECENT, end)
    return ((messages.grafana_dashboard(), link),) if link else ()
