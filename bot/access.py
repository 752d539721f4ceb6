"""Access control: roles map Slack users and user groups to runbooks per environment
(and, where a role says so, per Slack channel).

Group membership comes from Slack (`usergroups.users.list`, cached) or, without Slack, from
the static directory in the config.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Awaitable, Callable, Sequence

from bot import messages
from bot.config import EnvironmentConfig, RoleConfig, Settings
from bot.errors import Denied
from bot.markup import code
from bot.trigger import Trigger

__all__ = ["Access", "CachedGroups", "GroupMembers", "StandIn", "StaticGroups"]

GroupMembers = Callable[[str], Awaitable[frozenset[str]]]


class StaticGroups:
    """Members from `directory.groups` in the config (console, demo, tests)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def __call__(self, group_id: str) -> frozenset[str]:
        for group in self._settings.directory.groups.values():
            if group.id == group_id:
                return frozenset(group.members or ())
        return frozenset()


class StandIn(Exception):  # not an error: an answer that must not be cached
    """Raised by a member lookup that could not ask its source: `members` stand in for this
    one question and are not cached, so the source is asked again next time."""

    def __init__(self, members: frozenset[str]) -> None:
        super().__init__("group members from a stand-in")
        self.members = members


class CachedGroups:
    """Wraps a member lookup (Slack's usergroups.users.list) with a TTL cache."""

    def __init__(self, fetch: GroupMembers, ttl_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch = fetch
        self._ttl = ttl_seconds
        self._clock = clock  # seconds, monotonic; a test passes its own to age the cache
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}

    async def __call__(self, group_id: str) -> frozenset[str]:
        now = self._clock()
        hit = self._cache.get(group_id)
        if hit and now - hit[0] < self._ttl:
            return hit[1]
        try:
            members = await self._fetch(group_id)
        except StandIn as stand_in:
            return stand_in.members
        self._cache[group_id] = (now, members)
        return members

    def invalidate(self) -> None:
        self._cache.clear()


class Access:
    def __init__(self, settings: Settings, members: GroupMembers) -> None:
        self._settings = settings
        self._members = members

    def group_id(self, group: str) -> str:
        """A user group named by handle (`sre-approvers`) or id (`S0APPROVERS`)."""
        configured = self._settings.directory.groups.get(group)
        return configured.id if configured else group

    async def roles_of(self, user_id: str) -> list[str]:
        return [
            name for name, role in self._settings.roles.items() if await self._holds(user_id, role)
        ]

    async def in_group(self, user_id: str, group: str) -> bool:
        return user_id in await self._members(self.group_id(group))

    async def _holds(self, user_id: str, role: RoleConfig) -> bool:
        if user_id in role.users:
            return True
        for group in role.groups:
            if await self.in_group(user_id, group):
                return True
        return False

    def granting_roles(self, runbook: str, environment: str) -> list[str]:
        return [
            name
            for name, role in self._settings.roles.items()
            if matches(runbook, role.runbooks) and matches(environment, role.environments)
        ]

    @staticmethod
    def channel_accepts(trigger: Trigger, environment: EnvironmentConfig) -> bool:
        # Channels restrict chat; the console is an operator's own terminal.
        return (
            trigger.source != "slack"
            or not environment.channels
            or trigger.channel in environment.channels
        )

    def check_channel(self, trigger: Trigger, environment: EnvironmentConfig) -> None:
        if not self.channel_accepts(trigger, environment):
            raise Denied(
                messages.channel_only(environment.name, environment.channels),
                hint=messages.channel_only_hint(),
            )

    @staticmethod
    def role_holds_here(trigger: Trigger, role: RoleConfig) -> bool:
        # As for environments: channels restrict chat, never the operator's own terminal.
        return trigger.source != "slack" or not role.channels or trigger.channel in role.channels

    async def check(self, trigger: Trigger, runbook: str, environment: EnvironmentConfig) -> str:
        """The role that lets `trigger.actor` run `runbook` in `environment`, or Denied."""
        self.check_channel(trigger, environment)
        granting = self.granting_roles(runbook, environment.name)
        elsewhere: list[tuple[str, list[str]]] = []  # held, but only in other channels
        for name in granting:
            role = self._settings.roles[name]
            if await self._holds(trigger.actor, role):
                if self.role_holds_here(trigger, role):
                    return name
                elsewhere.append((name, role.channels))
        who = self._settings.handle(trigger.actor)
        if elsewhere:
            raise Denied(messages.role_channel_only(who, runbook, environment.name, elsewhere),
                         hint=messages.channel_only_hint())
        if granting:
            needs = " or ".join(code(r) for r in granting)
            raise Denied(
                f"{who} may not run {code(runbook)} in {code(environment.name)}: "
                f"it needs the role {needs}"
            )
        raise Denied(f"no role may run {code(runbook)} in {code(environment.name)}")

    async def may_break_glass(self, trigger: Trigger, runbook: str,
                              environment: EnvironmentConfig) -> bool:
        """Whether a role the actor holds grants this runbook here with break_glass set."""
        for name in self.granting_roles(runbook, environment.name):
            role = self._settings.roles[name]
            if (role.break_glass and self.role_holds_here(trigger, role)
                    and await self._holds(trigger.actor, role)):
                return True
        return False

    async def allowed_anywhere(self, trigger: Trigger, runbook: str) -> bool:
        for env in self._settings.environments.values():
            try:
                await self.check(trigger, runbook, env)
                return True
            except Denied:
                continue
        return False


def matches(value: str, patterns: Sequence[str]) -> bool:
    """Shell-style patterns, as roles and policies name runbooks and environments."""
    return any(fnmatch.fnmatchcase(value, pattern) for pattern in patterns)
