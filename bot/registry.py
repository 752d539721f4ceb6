"""The handler registry: a decorator builds a frozen record; runbook steps name handlers by string.

Handlers are keyword-only coroutines `async def h(*, ctx, params, **_) -> Result`.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from bot.config import AppConfig, EnvironmentConfig, Settings
    from bot.kube import KubeClients

__all__ = [
    "Attachment",
    "HandlerContext",
    "HandlerFn",
    "HandlerSpec",
    "MadeRevision",
    "Params",
    "Records",
    "Registry",
    "Result",
    "handler",
]


class Params(BaseModel):
    """Base of handler params models: unknown arguments are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParams(Params):
    pass


@dataclass(frozen=True)
class Attachment:
    """A file a step produced (a PNG graph); Slack uploads it, the console saves it."""

    filename: str
    content: bytes
    title: str
    mimetype: str = "image/png"


@dataclass(frozen=True)
class MadeRevision:
    """A revision that a step's change made: the audit log credits it to the execution, and
    `history` shows who made it. Only a handler that changed what runs says so; a revision a
    step merely read (status, a diagnosis) is data, never this.

    `kind` and `name` are the object (`Deployment` `shop-api`, `Application`
    `shop-api-staging`); `revision` is how `history` lists it: a Deployment's or Rollout's
    ReplicaSet revision number, a StatefulSet's ControllerRevision name, an Argo CD
    `argocd:<app>:<id>:<deployedAt>` key."""

    kind: str
    name: str
    revision: str


@dataclass(frozen=True)
class Result:
    """What a step produced: a one-line summary, ordered fields, optional long output."""

    summary: str
    fields: tuple[tuple[str, str], ...] = ()
    output: str | None = None
    ok: bool = True
    data: dict[str, Any] = field(default_factory=dict)  # for later steps' templates
    attachments: tuple[Attachment, ...] = ()
    made: tuple[MadeRevision, ...] = ()  # revisions this step's change made (see MadeRevision)
    # Checks this step was to make and could not, each with why: `critical alerts
    # (ALERTMANAGER_URL is not set)`. A step with any is "not checked", never "passed".
    not_checked: tuple[str, ...] = ()


@dataclass(frozen=True)
class HandlerContext:
    """Everything a handler may use; it never sees Slack or the console."""

    settings: Settings
    environment: EnvironmentConfig
    app: AppConfig | None
    kube: KubeClients
    dry_run: bool
    actor: str
    execution_id: str
    log: logging.LoggerAdapter[logging.Logger]
    progress: Callable[[str], Awaitable[None]]
    records: Records

    @property
    def namespace(self) -> str:
        return self.environment.namespace

    def require_app(self) -> AppConfig:
        from bot.errors import PermanentError

        if self.app is None:
            raise PermanentError("this step needs an app")
        return self.app


class Records(Protocol):
    """opsbot's own records that some handlers read or change (history, locks)."""

    async def audit_records(
        self, *, environment: str, target: str, outcomes: tuple[str, ...], limit: int
    ) -> list[dict[str, Any]]:
        """Audit records of `target` in `environment`, newest first."""

    async def force_unlock(self, *, environment: str, target: str) -> dict[str, Any] | None:
        """Remove the lock on `target`; returns what held it, or None."""

    async def held_locks(self) -> list[dict[str, Any]]:
        """Every target lock in force, with its command, `environment` and `target` (the app):
        running executions' leases, and reservations of requests awaiting approval
        (`execution_id` None, `request_id` set)."""

    async def lock_on(self, *, environment: str, target: str) -> dict[str, Any] | None:
        """The lock in force on `target` (what holds it), or None."""

    async def pause_automation(self, *, scope: str, duration: timedelta | None, actor: str,
                               reason: str | None) -> datetime | None:
        """Stop automatic runs in `scope` (an environment, or "*" for all) for `duration`
        (None: until resumed); returns when the pause ends."""

    async def resume_automation(self, *, scope: str) -> dict[str, Any]:
        """Lift pauses and close open circuit breakers: {"lifted": [...], "closed": [...]}."""

    async def automation_status(self) -> dict[str, Any]:
        """Pauses in force, open circuit breakers and the latest decisions:
        {"pauses": [...], "breakers": [...], "recent": [...]}."""

    async def executions(self, *, limit: int, running: bool, environment: str | None,
                         target: str | None) -> list[dict[str, Any]]:
        """Executions newest first, with a `link` to their chat message when there is one."""

    async def silence_made(self, *, silence_id: str, matchers: dict[str, str],
                           created_by: str, ends_at: datetime, execution_id: str) -> None:
        """Remember a silence this execution made (alert messages show it)."""

    async def silence_expired(self, *, silence_id: str, by: str) -> None:
        """Remember that `by` expired a silence."""


class HandlerFn(Protocol):
    def __call__(self, *, ctx: HandlerContext, params: Any) -> Awaitable[Result]: ...


@dataclass(frozen=True)
class HandlerSpec:
    name: str
    fn: Callable[..., Awaitable[Result]]
    params: type[Params]
    mutating: bool
    description: str


F = TypeVar("F", bound=Callable[..., Awaitable[Result]])
_ATTR = "__opsbot_handler__"


def handler(
    name: str, *, params: type[Params] = NoParams, mutating: bool = False
) -> Callable[[F], F]:
    """Mark a coroutine as the handler `name`; `Registry.load` picks it up from its module."""

    def mark(fn: F) -> F:
        doc = (fn.__doc__ or "").strip().splitlines()
        spec = HandlerSpec(name, fn, params, mutating, doc[0] if doc else "")
        setattr(fn, _ATTR, spec)
        return fn

    return mark


class Registry:
    """Handlers by name. Build one per process (or per test) with `Registry.builtin()`."""

    def __init__(self) -> None:
        self._specs: dict[str, HandlerSpec] = {}

    def register(self, spec: HandlerSpec) -> None:
        if spec.name in self._specs and self._specs[spec.name].fn is not spec.fn:
            raise ValueError(f"handler `{spec.name}` is registered twice")
        self._specs[spec.name] = spec

    def load(self, modules: Iterable[ModuleType | str]) -> Registry:
        """Register every decorated handler of the modules; import errors propagate."""
        for module in modules:
            mod = importlib.import_module(module) if isinstance(module, str) else module
            for value in vars(mod).values():
                if isinstance(value, ModuleType):
                    continue  # handlers are functions; reading a lazy module would import it
                spec = getattr(value, _ATTR, None)
                if isinstance(spec, HandlerSpec):
                    self.register(spec)
        return self

    @classmethod
    def builtin(cls) -> Registry:
        from handlers import BUILTIN_MODULES

        return cls().load(BUILTIN_MODULES)

    def get(self, name: str) -> HandlerSpec | None:
        return self._specs.get(name)

    def names(self) -> list[str]:
        return sorted(self._specs)

    def __iter__(self) -> Iterator[HandlerSpec]:
        return iter(self._specs.values())

    def __contains__(self, name: object) -> bool:
        return name in self._specs
