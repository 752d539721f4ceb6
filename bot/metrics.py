"""Prometheus counters, so `/metrics` tells what opsbot did; the dispatcher counts outcomes
before it reports them, so a scrape after a reply always includes that reply.

Counters live in the default registry; `prometheus_client.generate_latest()` renders them.
"""

from __future__ import annotations

from prometheus_client import Counter

__all__ = [
    "ALERT_DECISIONS",
    "ALERT_NOTIFICATIONS",
    "ALERT_NOTIFICATIONS_REFUSED",
    "EXECUTIONS",
    "SLACK_API_ERRORS",
    "TRIGGERS",
]

TRIGGERS = Counter(
    "opsbot_triggers",
    "Triggers handled, by where they came from and how the dispatcher ended them.",
    ["source", "outcome"],
)
EXECUTIONS = Counter(
    "opsbot_executions",
    "Executions that finished, by runbook and final status.",
    ["runbook", "status"],
)
SLACK_API_ERRORS = Counter(
    "opsbot_slack_api_errors",
    "Slack Web API calls that failed, by API method.",
    ["method"],
)
ALERT_NOTIFICATIONS = Counter(
    "opsbot_alert_notifications",
    "Alertmanager webhook requests, by how the intake answered them.",
    ["outcome"],
)
ALERT_NOTIFICATIONS_REFUSED = Counter(
    "opsbot_alert_notifications_refused",
    "Alertmanager webhook requests refused with a 4xx, by why: unauthorized, too_large, "
    "disconnected, not_json, version, invalid, nul_character, lone_surrogate.",
    ["reason"],
)
ALERT_DECISIONS = Counter(
    "opsbot_alert_decisions",
    "Guardrail decisions on automatic runs: run, shadow, cooldown, rate_limited, concurrency, "
    "breaker_open, paused, no_target.",
    ["decision"],
)
