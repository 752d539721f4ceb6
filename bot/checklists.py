"""Checklists around a change: what approvers confirm before it runs, and what the requester
ticks after it succeeded. Configured per environment and app (`checklist:`), chosen here."""

from __future__ import annotations

from dataclasses import dataclass

from bot.access import matches
from bot.config import AppConfig, EnvironmentConfig

__all__ = ["Checklists", "checklists_for", "unconfirmed"]


@dataclass(frozen=True)
class Checklists:
    before: tuple[str, ...] = ()
    after: tuple[str, ...] = ()


def checklists_for(runbook: str, environment: EnvironmentConfig,
                   app: AppConfig | None) -> Checklists:
    """The environment's items, then the app's, for the runbooks each one names."""
    before: list[str] = []
    after: list[str] = []
    for config in (environment.checklist, app.checklist if app else None):
        if config is not None and matches(runbook, config.runbooks):
            before += [i for i in config.before if i not in before]
            after += [i for i in config.after if i not in after]
    return Checklists(tuple(before), tuple(after))


def unconfirmed(items: tuple[str, ...], confirmed: tuple[int, ...] | None) -> list[str]:
    """The items (numbered from 1) a decision left unconfirmed."""
    done = set(confirmed or ())
    return [item for number, item in enumerate(items, 1) if number not in done]
