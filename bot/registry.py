"""The handler registry: a decorator builds a frozen record; runbook steps name handlers by string.

Handlers are keyword-only coroutines `async def h(*, ctx, params, **_) -> Result`. The built-in
modules are listed in `handlers/__init__.py`; third-party packages add modules through the
entry-point group `opsbot.handlers` (`Registry.installed()`), and one that fails to import or
reuses a handler's name stops startup.
"""

from __future__ import annotations

import importlib
import importlib.metadata
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
    "BUILTIN",
    "ENTRY_POINT_GROUP",
    "Announcement",
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
class Announcement:
    """A message a step sends to a channel (`notify`): handlers never call Slack; the Slack
    reporter turns it into an outbox row for `channel`, the console prints it."""

    channel: str
    text: str


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
    announcements: tuple[Announcement, ...] = ()  # messages to channels (see Announcement)


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

    async def cancel_requested(self, execution_id: str) -> str | None:
        """Who asked (`cancel <execution-id>`) to stop the execution, or None: a step that
        waits long (`wait`) reads it to end early."""


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
ENTRY_POINT_GROUP = "opsbot.handlers"
BUILTIN = "built-in"  # the origin of handlers shipped with opsbot


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
    """Handlers by name, each with where it comes from (built-in, or the distribution that
    installed it). Build one per process (or per test) with `Registry.builtin()` or, with the
    installed third-party handlers, `Registry.installed()`."""

    def __init__(self) -> None:
        self._specs: dict[str, HandlerSpec] = {}
        self._origins: dict[str, str] = {}

    def register(self, spec: HandlerSpec, *, origin: str = BUILTIN) -> None:
        known = self._specs.get(spec.name)
        if known is not None and known.fn is not spec.fn:
            from bot import messages
            from bot.errors import ConfigError

            raise ConfigError(messages.handler_name_clash(spec.name, self._origins[spec.name],
                                                          origin))
        self._specs[spec.name] = spec
        self._origins.setdefault(spec.name, origin)

    def load(self, modules: Iterable[ModuleType | str], *, origin: str = BUILTIN) -> Registry:
        """Register every decorated handler of the modules; import errors propagate."""
        for module in modules:
            mod = importlib.import_module(module) if isinstance(module, str) else module
            for value in vars(mod).values():
                if isinstance(value, ModuleType):
                    continue  # handlers are functions; reading a lazy module would import it
                spec = getattr(value, _ATTR, None)
                if isinstance(spec, HandlerSpec):
                    self.register(spec, origin=origin)
        return self

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> Registry:
        """Register the handler modules installed distributions name in `group`. One that
        fails to import stops startup with its entry point and distribution named: a broken
        package never makes its handlers silently vanish."""
        from bot import messages
        from bot.errors import ConfigError

        found = importlib.metadata.entry_points(group=group)
        for point in sorted(found, key=lambda p: (_distribution(p), p.name)):
            dist = _distribution(point)
            try:
                module = point.load()
            except Exception as exc:
                raise ConfigError(messages.entry_point_broken(
                    point.name, point.value, dist, f"{type(exc).__name__}: {exc}")) from exc
            if not isinstance(module, ModuleType):
                raise ConfigError(messages.entry_point_not_module(point.name, point.value, dist))
            self.load([module], origin=dist)
        return self

    @classmethod
    def builtin(cls) -> Registry:
        from handlers import BUILTIN_MODULES

        return cls().load(BUILTIN_MODULES)

    @classmethod
    def installed(cls) -> Registry:
        """The built-in handlers and those of every installed `opsbot.handlers` entry point."""
        return cls.builtin().load_entry_points()

    def get(self, name: str) -> HandlerSpec | None:
        return self._specs.get(name)

    def origin(self, name: str) -> str:
        """`built-in`, or the name of the distribution whose entry point registered it."""
        return self._origins[name]

    def names(self) -> list[str]:
        return sorted(self._specs)

    def __iter__(self) -> Iterator[HandlerSpec]:
        return iter(self._specs.values())

    def __contains__(self, name: object) -> bool:
        return name in self._specs


def _distribution(point: importlib.metadata.EntryPoint) -> str:
    dist = point.dist
    return dist.name if dist is not None and dist.name else "an unknown distribution"
