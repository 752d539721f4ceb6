"""Prometheus counters, so `/metrics` tells what opsbot did; the dispatcher counts outcomes
before it reports them, so a scrape after a reply always includes that reply. The outbox's
gauges are refreshed by its sender whenever it waits (at least every few seconds).

Counters and gauges live in the default registry; `prometheus_client.generate_latest()`
renders them.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "ACK_SECONDS",
    "ALERT_DECISIONS",
    "ALERT_NOTIFICATIONS",
    "ALERT_NOTIFICATIONS_REFUSED",
    "APPROVALS",
    "EXECUTIONS",
    "KUBERNETES_API_ERRORS",
    "LEADER",
    "OUTBOX_DELIVERIES",
    "OUTBOX_DEPTH",
    "OUTBOX_OLDEST",
    "SLACK_API_ERRORS",
    "SLACK_REQUESTS_REFUSED",
    "TRIGGERS",
    "TRIGGERS_RUNNING",
    "TRIGGERS_WAITING",
]

TRIGGERS = Counter(
    "opsbot_triggers",
    "Triggers handled, by where they came from and how the dispatcher ended them.",
    ["source", "outcome"],
)
TRIGGERS_RUNNING = Gauge(
    "opsbot_triggers_running",
    "Acked triggers whose work is running in this process (at most its running limit).",
)
TRIGGERS_WAITING = Gauge(
    "opsbot_triggers_waiting",
    "Acked triggers waiting in this process for a running one to end, started in the order "
    "they were acked.",
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
SLACK_REQUESTS_REFUSED = Counter(
    "opsbot_slack_requests_refused",
    "Requests to /slack/events and Socket Mode envelopes refused before Bolt, by HTTP status.",
    ["status"],
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
OUTBOX_DELIVERIES = Counter(
    "opsbot_outbox_deliveries",
    "Slack outbox rows handled by this process's sender, by API method and outcome: delivered, "
    "rate_limited, retried, substituted (its replacement is sent), skipped (its message was "
    "never posted), failed (refused for good), dropped (retry budget exhausted).",
    ["method", "outcome"],
)
OUTBOX_DEPTH = Gauge(
    "opsbot_outbox_depth",
    "Slack outbox rows not delivered yet (every process sharing the database).",
)
OUTBOX_OLDEST = Gauge(
    "opsbot_outbox_oldest_pending_seconds",
    "Age of the oldest Slack outbox row not delivered yet; 0 when there is none.",
)
LEADER = Gauge(
    "opsbot_leader",
    "1 on the replica that holds the leader Lease (or leads alone), 0 on the others.",
)
ACK_SECONDS = Histogram(
    "opsbot_ack_seconds",
    "Time from a Slack request's arrival to its acknowledgement (Slack gives up after 3 s), by "
    "transport: http (/slack/events) or socket (Socket Mode).",
    ["transport"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0),
)
APPROVALS = Counter(
    "opsbot_approvals",
    "Approval requests' events, by outcome: requested, approved, denied, cancelled, expired, "
    "break-glass, acknowledged; void, not-started, interrupted when an approved run could not "
    "start or was cut short.",
    ["outcome"],
)
KUBERNETES_API_ERRORS = Counter(
    "opsbot_kubernetes_api_errors",
    "Kubernetes API calls that failed, by the Status reason (NotFound, Forbidden, Conflict, "
    "...; Unreachable when no answer came) and HTTP status (0 when none).",
    ["reason", "status"],
)
