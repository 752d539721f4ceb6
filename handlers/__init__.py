"""Handlers: one module per capability, each registering its handlers with `@handler`."""

from __future__ import annotations

# Imported explicitly by Registry.builtin(): an import error stops startup, never hides a handler.
BUILTIN_MODULES = (
    "handlers.status",
    "handlers.diagnostics",
    "handlers.logs",
    "handlers.metrics",
    "handlers.scale",
    "handlers.restart",
    "handlers.analysis",
    "handlers.prechecks",
    "handlers.deploy.steps",
    "handlers.history",
    "handlers.locks",
    "handlers.executions",
    "handlers.rollouts",
    "handlers.automation",
    "handlers.silence",
    "handlers.backup.backups",
    "handlers.backup.restore",
    "handlers.backup.schedules",
    "handlers.backup.verify",
    "handlers.incidents.platform_storage",
    "handlers.incidents.platform_jobs",
    "handlers.incidents.platform_targets",
    "handlers.incidents.platform_certs",
    "handlers.incidents.platform_ingress",
    "handlers.incidents.platform_velero",
    "handlers.pods",
    "handlers.incidents.workload_crash",
    "handlers.incidents.workload_pods",
    "handlers.incidents.workload_rollout",
    "handlers.incidents.workload_capacity",
)
