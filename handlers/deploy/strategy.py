"""The strategy interface: each way of deploying plans, applies, follows and reverts changes.

`handlers/deploy/steps.py` registers the handlers runbooks call; they pick a strategy by the
app's `deploy.strategy` and never branch on it themselves. So does the pre-deploy health check
(`health`): a strategy whose target is not a Deployment or StatefulSet judges it itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from bot.config import AppConfig
from bot.errors import PermanentError
from bot.markup import code
from bot.registry import HandlerContext
from handlers.deploy.plan import Plan
from handlers.workload import read_workload, rollout_state, selector_string

__all__ = ["ChecksHealth", "Health", "Progress", "Strategy", "health", "pod_labels",
           "strategy_for"]


@dataclass(frozen=True)
class Progress:
    """Where a rollout stands: done, failed (with why), or still going."""

    done: bool
    failed: bool
    message: str
    revision: str | None = None  # the revision now running, when the strategy knows it


@dataclass(frozen=True)
class Health:
    """Whether a deploy may start on the app's workload as it runs now, and why (not)."""

    healthy: bool
    target: str  # what was looked at, as messages name it: `shop-api`, `Rollout shop-canary`
    message: str  # `3/3 ready`, `Degraded, 3/4 available: ...`


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


def strategy_for(ctx: HandlerContext, app: AppConfig | None = None) -> Strategy:
    """The app's configured strategy; each strategy module exposes one `STRATEGY`."""
    from handlers.deploy import argocd, kubernetes, rollouts

    strategies: dict[str, Strategy] = {
        s.name: s for s in (kubernetes.STRATEGY, argocd.STRATEGY, rollouts.STRATEGY)
    }
    app = app or ctx.require_app()
    if app.deploy.strategy not in strategies:
        raise PermanentError(
            f"deploy strategy {code(app.deploy.strategy)} of {app.name} is unknown")
    return strategies[app.deploy.strategy]


@runtime_checkable
class ChecksHealth(Protocol):
    """A strategy whose target is not the app's Deployment or StatefulSet (an Argo Rollout)
    judges the target's health and finds its pods itself."""

    async def health(self, ctx: HandlerContext, app: AppConfig) -> Health:
        """Whether the target is healthy enough to deploy onto."""

    async def pod_labels(self, ctx: HandlerContext, app: AppConfig) -> dict[str, str]:
        """The matchLabels of the target's pods."""


async def health(ctx: HandlerContext, app: AppConfig | None = None) -> Health:
    """The app's workload health by its strategy; by default a Deployment or StatefulSet is
    healthy when its rollout is complete and every desired replica is ready."""
    app = app or ctx.require_app()
    strategy = strategy_for(ctx, app)
    if isinstance(strategy, ChecksHealth):
        return await strategy.health(ctx, app)
    workload = await read_workload(ctx, app)
    state = rollout_state(workload)
    return Health(state.done and state.ready >= state.desired, workload.name, state.message)


async def pod_labels(ctx: HandlerContext, app: AppConfig | None = None) -> dict[str, str]:
    """The matchLabels selecting the app's pods, from whatever its strategy deploys, for
    anything that must find them (a backup's label selector)."""
    app = app or ctx.require_app()
    strategy = strategy_for(ctx, app)
    if isinstance(strategy, ChecksHealth):
        return await strategy.pod_labels(ctx, app)
    workload = await read_workload(ctx, app)
    selector_string(workload)  # refuses a workload without a matchLabels selector
    return dict(workload.obj.spec.selector.match_labels)
