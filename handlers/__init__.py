"""Handlers: one module per capability, each registering its handlers with `@handler`."""

from __future__ import annotations

# Imported explicitly by Registry.builtin(): an import error stops startup, never hides a handler.
BUILTIN_MODULES = (
    "handlers.status",
    "handlers.diagnostics",
    "handlers.scale",
    "handlers.restart",
    "handlers.analysis",
    "handlers.prechecks",
    "handlers.deploy.steps",
    "handlers.history",
    "handlers.locks",
    "handlers.rollouts",
)
