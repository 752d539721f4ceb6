"""Scripted outcomes: tests (and `/_sim/backup-outcome`, `/_sim/restore-outcome`) name the
backups or restores that should end PartiallyFailed, Failed, or hang InProgress."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DEFAULT_FAILURE = "scripted failure (simulated)"
Outcome = Literal["PartiallyFailed", "Failed", "hang"]
OUTCOMES: tuple[Outcome, ...] = ("PartiallyFailed", "Failed", "hang")


@dataclass(frozen=True)
class OutcomeScript:
    """Backups (or restores) whose name starts with `name_prefix` end this way."""

    name_prefix: str
    outcome: Outcome
    errors: int = 1
    warnings: int = 0
    failure_reason: str = DEFAULT_FAILURE

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")
        for name in ("errors", "warnings"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a whole number, 0 or more")
        if self.outcome == "PartiallyFailed" and self.errors < 1:
            raise ValueError("a PartiallyFailed outcome needs at least one error")


def parse_outcome(value: object) -> Outcome:
    for outcome in OUTCOMES:
        if value == outcome:
            return outcome
    raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")


def script_for(scripts: list[OutcomeScript], name: str) -> OutcomeScript | None:
    """The latest script whose prefix `name` starts with."""
    return next((s for s in reversed(scripts) if name.startswith(s.name_prefix)), None)
