"""Grafana links: built only from configuration and validated names, every value URL-encoded,
nothing when Grafana or a dashboard is not configured."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from bot.config import GrafanaConfig, Settings, settings_from_mapping
from bot.errors import ConfigError
from bot.grafana import dashboard_link, explore_link

START = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
END = START + timedelta(minutes=30)


def _settings(offline_settings: Settings, **grafana: object) -> Settings:
    return offline_settings.model_copy(update={"grafana": GrafanaConfig.model_validate(grafana)})


def test_no_link_without_grafana_or_a_dashboard(offline_settings: Settings) -> None:
    app = offline_settings.apps["shop-api"]
    assert dashboard_link(offline_settings, app, "shop-staging", START, END) is None
    assert explore_link(offline_settings, "up", START, END) is None
    only_url = _settings(offline_settings, url="https://g.example")
    assert dashboard_link(only_url, app, "shop-staging", START, END) is None


def test_dashboard_link_with_range_and_variables(offline_settings: Settings) -> None:
    settings = _settings(offline_settings, url="https://g.example/grafana/", dashboard="golden")
    app = settings.apps["shop-api"].model_copy(update={"dashboard": "api-board"})
    link = dashboard_link(settings, app, "shop-staging", START, END)
    assert link is not None
    parts = urlsplit(link)
    assert parts.path == "/grafana/d/api-board"
    query = parse_qs(parts.query)
    assert query["from"] == [str(int(START.timestamp() * 1000))]
    assert query["to"] == [str(int(END.timestamp() * 1000))]
    assert query["var-namespace"] == ["shop-staging"] and query["var-app"] == ["shop-api"]
    # The default dashboard for apps that name none; `to=now` for what goes on.
    other = dashboard_link(settings, settings.apps["shop-web"], "shop-prod", START, None)
    assert other is not None and "/d/golden?" in other and "to=now" in other


def test_explore_link_carries_the_query_encoded(offline_settings: Settings) -> None:
    settings = _settings(offline_settings, url="https://g.example", datasource="prom")
    promql = 'sum(rate(x{app="a&b=c #d"}[5m]))'
    link = explore_link(settings, promql, START, END)
    assert link is not None and " " not in link and "#" not in link
    panes = json.loads(parse_qs(urlsplit(link).query)["panes"][0])
    assert panes["a"]["queries"][0]["expr"] == promql
    assert panes["a"]["range"] == {"from": str(int(START.timestamp() * 1000)),
                                   "to": str(int(END.timestamp() * 1000))}


@pytest.mark.parametrize("grafana", [
    {"url": "javascript:alert(1)"},
    {"url": "https://g.example", "dashboard": "../admin"},
    {"url": "https://g.example", "datasource": "a b"},
])
def test_grafana_settings_are_checked(grafana: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        settings_from_mapping({"default_environment": "s",
                               "environments": {"s": {"namespace": "s"}}, "grafana": grafana})


def test_an_apps_dashboard_uid_is_checked() -> None:
    with pytest.raises(ConfigError, match=r"apps\.web\.dashboard"):
        settings_from_mapping({"default_environment": "s",
                               "environments": {"s": {"namespace": "s"}},
                               "apps": {"web": {"dashboard": "x/y"}}})
