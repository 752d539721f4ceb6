"""Links into Grafana for messages: an app's dashboard over a time range, and Explore for one
PromQL query. Built only from configuration and validated names; every value is URL-encoded.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

if TYPE_CHECKING:
    from bot.config import AppConfig, Settings

__all__ = ["dashboard_link", "explore_link", "millis"]


def millis(moment: datetime) -> int:
    """Grafana's time: milliseconds since the epoch."""
    return int(moment.timestamp() * 1000)


def dashboard_link(settings: Settings, app: AppConfig | None, namespace: str,
                   start: datetime, end: datetime | None) -> str | None:
    """`<grafana>/d/<uid>?from=<ms>&to=<ms>&var-namespace=…&var-app=…`, or None when Grafana
    or a dashboard for the app is not configured. `end` None: `to=now`, for what goes on (an
    alert), so the link stays the same and current."""
    uid = settings.dashboard_for(app)
    base = settings.grafana.url
    if uid is None or base is None:
        return None
    query = urlencode({
        "orgId": settings.grafana.org_id,
        "from": millis(start),
        "to": "now" if end is None else millis(max(end, start + timedelta(seconds=1))),
        "var-namespace": namespace,
        "var-app": app.name if app else "",
    })
    return f"{base.rstrip('/')}/d/{quote(uid, safe='')}?{query}"


def explore_link(settings: Settings, promql: str, start: datetime, end: datetime) -> str | None:
    """Grafana Explore showing `promql` over the range (the `panes` state of Grafana 10 and
    later), or None when Grafana is not configured. Without `grafana.datasource`, Explore
    opens on the default data source."""
    base = settings.grafana.url
    if base is None:
        return None
    query: dict[str, object] = {"refId": "A", "expr": promql}
    pane: dict[str, object] = {
        "queries": [query],
        "range": {"from": str(millis(start)), "to": str(millis(end))},
    }
    if settings.grafana.datasource:
        source = {"type": "prometheus", "uid": settings.grafana.datasource}
        pane["datasource"] = settings.grafana.datasource
        query["datasource"] = source
    state = json.dumps({"a": pane}, separators=(",", ":"))
    params = urlencode({"schemaVersion": 1, "panes": state, "orgId": settings.grafana.org_id})
    return f"{base.rstrip('/')}/explore?{params}"
