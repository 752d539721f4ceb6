"""Alertmanager webhook payloads (version 4) as Alertmanager builds them, for tests."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

__all__ = ["alert", "fingerprint", "notification", "to_bytes"]

ZERO_TIME = "0001-01-01T00:00:00Z"


def fingerprint(labels: dict[str, str]) -> str:
    """A stable fingerprint per label set (Alertmanager's is a 64-bit hash in hex)."""
    text = json.dumps(sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def alert(labels: dict[str, str], *, status: str = "firing", starts_at: str | None = None,
          ends_at: str | None = None, annotations: dict[str, str] | None = None,
          **extra: Any) -> dict[str, Any]:
    return {
        "status": status,
        "labels": labels,
        "annotations": annotations or {"summary": f"{labels.get('alertname')} test alert"},
        "startsAt": starts_at or "2026-11-26T10:00:00Z",
        "endsAt": ends_at or (ZERO_TIME if status == "firing"
                              else datetime.now(UTC).isoformat().replace("+00:00", "Z")),
        "generatorURL": "http://prometheus.example/graph?g0.expr=up",
        "fingerprint": fingerprint(labels),
        **extra,
    }


def notification(alerts: list[dict[str, Any]], *, group_labels: dict[str, str] | None = None,
                 receiver: str = "opsbot", truncated: int = 0, **extra: Any) -> dict[str, Any]:
    group = group_labels if group_labels is not None else {
        k: v for k, v in alerts[0]["labels"].items() if k in ("alertname", "namespace")}
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    key = "{}:{" + ", ".join(f'{k}="{v}"' for k, v in sorted(group.items())) + "}"
    return {
        "version": "4", "groupKey": key, "truncatedAlerts": truncated, "status": status,
        "receiver": receiver, "groupLabels": group,
        "commonLabels": alerts[0]["labels"] if len(alerts) == 1 else group,
        "commonAnnotations": {}, "externalURL": "http://alertmanager.example",
        "alerts": alerts, **extra,
    }


def to_bytes(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()
