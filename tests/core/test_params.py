from __future__ import annotations

import pytest

from bot.config import Settings
from bot.errors import UnknownName, UsageError
from bot.markup import plain
from bot.numbers import parse_duration
from bot.registry import Registry
from bot.runbooks.loader import load_catalog
from bot.runbooks.models import Runbook
from bot.runbooks.params import coerce_params


def _rb(registry: Registry, name: str) -> Runbook:
    return load_catalog([], registry).by_name(name)


def test_scale_params_typed(registry: Registry, offline_settings: Settings) -> None:
    values = coerce_params(
        _rb(registry, "scale"),
        {"app": "shop-api", "replicas": "4"},
        settings=offline_settings,
        environment="staging",
    )
    assert values == {"app": "shop-api", "replicas": 4}


@pytest.mark.parametrize("replicas", ["0", "11", "100"])
def test_replicas_outside_app_bounds(
    registry: Registry, offline_settings: Settings, replicas: str
) -> None:
    with pytest.raises(UsageError, match="may run 1 to 10 replicas"):
        coerce_params(
            _rb(registry, "scale"),
            {"app": "shop-api", "replicas": replicas},
            settings=offline_settings,
            environment="staging",
        )


def test_replicas_not_a_number(registry: Registry, offline_settings: Settings) -> None:
    with pytest.raises(UsageError, match="whole number"):
        coerce_params(
            _rb(registry, "scale"),
            {"app": "shop-api", "replicas": "five"},
            settings=offline_settings,
            environment="staging",
        )


def test_unknown_app_suggests(registry: Registry, offline_settings: Settings) -> None:
    with pytest.raises(UnknownName) as err:
        coerce_params(
            _rb(registry, "status"),
            {"app": "shop-apii"},
            settings=offline_settings,
            environment="staging",
        )
    assert err.value.suggestions[0] == "shop-api"


def test_app_not_in_environment(registry: Registry, offline_settings: Settings) -> None:
    with pytest.raises(UsageError) as raised:
        coerce_params(
            _rb(registry, "status"),
            {"app": "shop-worker"},
            settings=offline_settings,
            environment="prod",
        )
    assert plain(str(raised.value)) == "`shop-worker` is not deployed to prod; it is in staging"


@pytest.mark.parametrize("bad", ["Shop_API", "../etc", "a" * 64, "shop-api;ls", "-x", "x/../y"])
def test_invalid_dns1123_names(registry: Registry, offline_settings: Settings, bad: str) -> None:
    with pytest.raises(UsageError, match="not a valid app name"):
        coerce_params(
            _rb(registry, "status"), {"app": bad}, settings=offline_settings, environment="staging"
        )


def test_missing_required(registry: Registry, offline_settings: Settings) -> None:
    with pytest.raises(UsageError, match="missing <replicas>"):
        coerce_params(
            _rb(registry, "scale"),
            {"app": "shop-api"},
            settings=offline_settings,
            environment="staging",
        )


def test_durations() -> None:
    assert parse_duration("1d12h").total_seconds() == 36 * 3600
    assert parse_duration("90s").total_seconds() == 90
    for bad in ["", "10", "h", "1w", "-5m"]:
        with pytest.raises(UsageError):
            parse_duration(bad)
