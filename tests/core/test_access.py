from __future__ import annotations

import pytest

from bot.access import Access, CachedGroups, StaticGroups
from bot.config import Settings, settings_from_mapping
from bot.errors import Denied
from bot.markup import channel, plain
from bot.trigger import Trigger


def _trigger(actor: str, channel: str | None = None, source: str = "console") -> Trigger:
    return Trigger(source=source, actor=actor, text="x", channel=channel)  # type: ignore[arg-type]


@pytest.fixture
def access(offline_settings: Settings) -> Access:
    return Access(offline_settings, StaticGroups(offline_settings))


async def test_deployer_may_scale(access: Access, offline_settings: Settings) -> None:
    role = await access.check(_trigger("U0ALICE"), "scale", offline_settings.environment("staging"))
    assert role == "deployer"


async def test_viewer_denied_names_missing_role(access: Access, offline_settings: Settings) -> None:
    with pytest.raises(Denied) as err:
        await access.check(_trigger("U0MALLORY"), "scale", offline_settings.environment("staging"))
    assert "mallory may not run `scale` in `staging`" in plain(str(err.value))
    assert "`deployer` or `sre`" in plain(str(err.value))


async def test_group_membership_grants_role(access: Access, offline_settings: Settings) -> None:
    assert (
        await access.check(_trigger("U0BOB"), "restart", offline_settings.environment("prod"))
        == "sre"
    )


async def test_unknown_user_has_no_role(access: Access, offline_settings: Settings) -> None:
    with pytest.raises(Denied):
        await access.check(_trigger("U0NOBODY"), "status", offline_settings.environment("staging"))


def _restricted() -> Settings:
    return settings_from_mapping(
        {
            "default_environment": "prod",
            "environments": {"prod": {"namespace": "shop-prod", "channels": ["C0PROD"]}},
            "roles": {"ops": {"users": ["U1"]}},
        }
    )


async def test_channel_restriction_applies_to_slack() -> None:
    settings = _restricted()
    access = Access(settings, StaticGroups(settings))
    env = settings.environment("prod")
    assert await access.check(_trigger("U1", "C0PROD", "slack"), "status", env) == "ops"
    with pytest.raises(Denied) as err:
        await access.check(_trigger("U1", "C0OTHER", "slack"), "status", env)
    assert str(err.value).endswith(f"only accepted in {channel('C0PROD')}")


async def test_channel_restriction_skips_console() -> None:
    settings = _restricted()
    access = Access(settings, StaticGroups(settings))
    assert await access.check(_trigger("U1"), "status", settings.environment("prod")) == "ops"


async def test_group_cache_expires() -> None:
    calls: list[str] = []
    members = {"S1": frozenset({"U1"})}

    async def fetch(group: str) -> frozenset[str]:
        calls.append(group)
        return members[group]

    cached = CachedGroups(fetch, ttl_seconds=60)
    assert await cached("S1") == {"U1"}
    members["S1"] = frozenset({"U2"})
    assert await cached("S1") == {"U1"}  # cached
    cached.invalidate()
    assert await cached("S1") == {"U2"}
    assert calls == ["S1", "S1"]


def _role_in_channel() -> Settings:
    return settings_from_mapping(
        {
            "default_environment": "staging",
            "environments": {"staging": {"namespace": "shop-staging"}},
            "roles": {
                "deployer": {"users": ["U1"], "runbooks": ["scale"], "channels": ["C0DEPLOYS"]},
                "viewer": {"users": ["U1"], "runbooks": ["status"]},
                "sre": {"users": ["U2"], "channels": ["C0SRE"], "break_glass": True},
            },
        }
    )


async def test_a_role_limited_to_channels_holds_only_there() -> None:
    settings = _role_in_channel()
    access = Access(settings, StaticGroups(settings))
    env = settings.environment("staging")
    assert await access.check(_trigger("U1", "C0DEPLOYS", "slack"), "scale", env) == "deployer"
    with pytest.raises(Denied) as err:
        await access.check(_trigger("U1", "C0OTHER", "slack"), "scale", env)
    assert plain(str(err.value)) == (
        "U1 may run `scale` in `staging` only from the channels of their role: "
        "`deployer` in #C0DEPLOYS")
    # a role without channels holds everywhere; the console is not channel-restricted
    assert await access.check(_trigger("U1", "C0OTHER", "slack"), "status", env) == "viewer"
    assert await access.check(_trigger("U1"), "scale", env) == "deployer"


async def test_break_glass_follows_the_roles_channels() -> None:
    settings = _role_in_channel()
    access = Access(settings, StaticGroups(settings))
    env = settings.environment("staging")
    assert await access.may_break_glass(_trigger("U2", "C0SRE", "slack"), "scale", env)
    assert not await access.may_break_glass(_trigger("U2", "C0OTHER", "slack"), "scale", env)


@pytest.mark.parametrize("where", ["roles", "environments", "approval"])
def test_channels_are_named_by_id(where: str) -> None:
    from bot.errors import ConfigError

    raw: dict = {
        "default_environment": "staging",
        "environments": {"staging": {"namespace": "shop-staging"}},
        "roles": {"ops": {"users": ["U1"]}},
    }
    if where == "roles":
        raw["roles"]["ops"]["channels"] = ["#deploys"]
    elif where == "environments":
        raw["environments"]["staging"]["channels"] = ["#deploys"]
    else:
        raw["environments"]["staging"]["approval"] = {"channels": ["#deploys"]}
    with pytest.raises(ConfigError) as err:
        settings_from_mapping(raw)
    assert "'#deploys' is not a Slack channel id" in str(err.value)
