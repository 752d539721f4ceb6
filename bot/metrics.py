"""Prometheus counters, so `/metrics` tells what opsbot did; the dispatcher counts outcomes
before it reports them, so a scrape after a reply always includes that reply.

Counters live in the default registry; `prometheus_client.generate_latest()` renders them.
"""

from __future__ import annotations

from prometheus_client import Counter

__all__ = ["EXECUTIONS", "SLACK_API_ERRORS", "TRIGGERS"]

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
