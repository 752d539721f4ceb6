"""An invocation: a parsed, resolved command about to run (or to wait for approval), so the
dispatcher and the approval flow pass one value instead of six."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.commands import Command
from bot.config import AppConfig, EnvironmentConfig
from bot.runbooks.models import Runbook
from bot.trigger import Trigger

__all__ = ["Invocation"]


@dataclass(frozen=True)
class Invocation:
    trigger: Trigger
    command: Command
    runbook: Runbook
    environment: EnvironmentConfig
    app: AppConfig | None
    params: dict[str, Any]
    # Extra template values: `alert` for runs an alert started (see docs/alerts.md).
    context: Mapping[str, Any] = field(default_factory=dict)

    @property
    def target(self) -> str | None:
        return self.app.name if self.app else None

    def parts(
        self,
    ) -> tuple[Trigger, Command, Runbook, EnvironmentConfig, AppConfig | None, dict[str, Any]]:
        return self.trigger, self.command, self.runbook, self.environment, self.app, self.params
