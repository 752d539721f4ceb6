"""Alertmanager webhook payloads (version 4) for the bench, and what the store kept of them."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import create_engine, text

from bench.load import Request
from bench.procs import ALERTMANAGER_TOKEN
from tests.support.alert_payloads import alert, notification

HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {ALERTMANAGER_TOKEN}"}


def post(payload: dict[str, Any]) -> Request:
    return Request("/alertmanager", json.dumps(payload).encode(), HEADERS)


def intake_notifications(n: int, per: int = 10, tag: str = "") -> list[Request]:
    """`n` notifications of `per` firing alerts each, every alert new (its own fingerprint);
    `BenchIntake` matches no runbook, so only the intake and the group message are measured."""
    out = []
    for i in range(n):
        alerts = [alert({"alertname": "BenchIntake", "namespace": "shop-staging",
                         "pod": f"shop-api-bench{tag}-{i}-{j}", "severity": "warning"})
                  for j in range(per)]
        out.append(post(notification(alerts, group_labels={
            "alertname": "BenchIntake", "batch": f"{tag}{i}"})))
    return out


def scalar(url: str, sql: str) -> Any:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql)).scalar()
    finally:
        engine.dispose()


def rows(url: str, sql: str) -> list[Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql)))
    finally:
        engine.dispose()
