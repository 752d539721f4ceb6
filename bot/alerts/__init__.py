"""Alert-driven remediation: Alertmanager's webhook intake, dedup, routing to runbooks,
guardrails, and the alert-group messages. See docs/alerts.md."""
