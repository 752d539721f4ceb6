"""The Slack front end: Bolt app, Block Kit rendering, reporter and the `opsbot serve` server.

Slack input becomes a `Trigger`; reports come back through `SlackReporter`. Nothing here
knows about Kubernetes.
"""
