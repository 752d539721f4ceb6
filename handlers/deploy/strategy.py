"""The strategy interface: each way of deploying plans, applies, follows and reverts changes.

`handlers/deploy/steps.py` registers the handlers runbooks call; they pick a strategy by the
app's `deploy.strategy` and never branch on it themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bot.errors import PermanentError
from bot.registry import HandlerContext
from handlers.deploy.plan import Plan

__all__ = ["Progress", "Strategy", "strategy_for"]


@dataclass(frozen=True)
class Progress:
    """Where a rollout stands: done, failed (with why), or still going."""

    done: bool
    failed: bool
    message: str
    revision: str | None = None  # the revision now running, when the strategy knows it


class Strategy(Protocol):
    name: str

    async def plan_deploy(self, ctx: HandlerContext, image: str) -> Plan:
        """The plan to run `image` (a bare tag keeps the configured repository)."""

    async def plan_rollback(
        self, ctx: HandlerContext, to: int | None, *, disable_auto_sync: bool = False
    ) -> Plan:
        """The plan to go back to revision `to`, or the previous one. `disable_auto_sync`
        lets an Argo CD rollback turn auto-sync off first (it stays off)."""

    async def apply(self, ctx: HandlerContext, plan: Plan) -> str:
        """Make the change; returns a one-line summary. Must not be called in a dry run."""

    async def progress(self, ctx: HandlerContext, plan: Plan) -> Progress:
        """One look at the rollout of an applied plan."""

    async def revert(self, ctx: HandlerContext, plan: Plan, reason: str) -> str:
        """Undo an applied plan after a failure (auto rollback); returns a summary."""


def strategy_for(ctx: HandlerContext) -> Strategy:
    """The app's configured strategy; each strategy module exposes one `STRATEGY`."""
    from handlers.deploy import argocd, kubernetes, rollouts

    strategies: dict[str, Strategy] = {
        s.name: s for s in (kubernetes.STRATEGY, argocd.STRATEGY, rollouts.STRATEGY)
    }
    app = ctx.require_app()
    if app.deploy.strategy not in strategies:
        raise PermanentError(f"deploy strategy `{app.deploy.strategy}` of {app.name} is unknown")
    return strategies[app.deploy.strategy]
