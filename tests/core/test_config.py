from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.config import load_settings, settings_from_mapping
from bot.errors import ConfigError, UnknownName
from bot.services import Services
from bot.slack.server import parse_listen
from simcluster.cli import parse_listen as simcluster_listen

ROOT = Path(__file__).parents[2]


def test_environment_variables_win(tmp_path: Path) -> None:
    settings = load_settings(
        ROOT / "examples/demo.yaml",
        environ={
            "SLACK_BOT_TOKEN": "xoxb-secret",
            "OPSBOT_LISTEN": "127.0.0.1:9999",
            "SLACK_API_URL": "http://127.0.0.1:1/api/",
        },
    )
    assert settings.listen == "127.0.0.1:9999"
    assert settings.slack.api_url == "http://127.0.0.1:1/api/"
    assert settings.slack.bot_token is not None
    assert settings.slack.bot_token.get_secret_value() == "xoxb-secret"
    assert "xoxb-secret" not in repr(settings)


def test_config_from_opsbot_config_variable() -> None:
    settings = load_settings(environ={"OPSBOT_CONFIG": str(ROOT / "examples/demo.yaml")})
    assert settings.default_environment == "staging"


def test_missing_config() -> None:
    with pytest.raises(ConfigError, match="OPSBOT_CONFIG"):
        load_settings(environ={})


def test_invalid_config_names_the_field(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("default_environment: qa\nenvironments:\n  staging: {namespace: s}\n")
    with pytest.raises(ConfigError, match="default_environment `qa` is not defined"):
        load_settings(file, environ={})


def test_default_environment_may_not_require_approval(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text(
        "default_environment: prod\n"
        "environments:\n"
        "  staging: {namespace: s}\n"
        "  prod: {namespace: p, requires_approval: true}\n"
    )
    with pytest.raises(ConfigError, match="`prod` requires approval; production is never implied"):
        load_settings(file, environ={})


def test_invalid_namespace(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("default_environment: a\nenvironments:\n  a: {namespace: Bad_NS}\n")
    with pytest.raises(ConfigError, match="not a valid namespace"):
        load_settings(file, environ={})


def test_unknown_environment_suggests() -> None:
    settings = load_settings(ROOT / "examples/demo.yaml", environ={})
    with pytest.raises(UnknownName) as err:
        settings.environment("prd")
    assert err.value.suggestions == ["prod"]


def test_users_by_handle_or_id() -> None:
    settings = load_settings(ROOT / "examples/demo.yaml", environ={})
    assert settings.user_id("alice") == "U0ALICE"
    assert settings.user_id("U0BOB") == "U0BOB"
    with pytest.raises(UnknownName):
        settings.user_id("alcie")
    with pytest.raises(UnknownName):
        settings.user_id("U٣٣")  # not a Slack id: those are ASCII


def _demo_with(**changes: Any) -> dict[str, Any]:
    """The demo configuration with `section.key` values replaced."""
    raw: dict[str, Any] = yaml.safe_load((ROOT / "examples/demo.yaml").read_text())
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return raw


@pytest.mark.parametrize(("changes", "said"), [
    # Numbers people type are YAML numbers: no "1_000", "+3" or " 3 " in quotes, no .inf.
    ({"apps__shop-api__replicas": {"min": 1, "max": "1_000"}}, "replicas.max"),
    ({"apps__shop-api__replicas": {"min": " 1 ", "max": 10}}, "replicas.min"),
    ({"alerts__max_concurrent": "+3"}, "alerts.max_concurrent"),
    ({"alerts__poll_seconds": float("inf")}, "alerts.poll_seconds"),
    ({"apps__shop-api__analysis": {"initial_delay_seconds": float("inf")}}, "initial_delay"),
    # Every configured duration has a maximum: these overflowed where they were used.
    ({"environments__prod__approval__ttl_minutes": 99999999999999}, "ttl_minutes"),
    ({"break_glass_reminder_minutes": 10**20}, "break_glass_reminder_minutes"),
    ({"apps__shop-api__deploy": {"timeout_seconds": 10**20}}, "timeout_seconds"),
    ({"backup__default_ttl": "99999999999d"}, "backup.default_ttl is at most 3650d"),
    ({"backup__default_ttl": "999999999d"}, "backup.default_ttl is at most 3650d"),
    ({"backup__default_ttl": "0s"}, "backup.default_ttl is at least 1m"),
    ({"backup__default_ttl": "٣d"}, "`٣d` is not a duration"),
    ({"backup__verify_cron": "٠ 3 * * *"}, "use the digits 0-9"),
    ({"alerts__silence_durations": ["1h", "99999999999d"]}, "alerts.silence_durations is at "
                                                            "most 3650d"),
    ({"alerts__silence_durations": ["1h", "۱h"]}, "is not a duration"),
])
def test_config_numbers_and_durations(changes: dict[str, Any], said: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings_from_mapping(_demo_with(**changes))
    assert said in str(err.value)


def test_silence_buttons_must_be_silences_the_runbook_takes() -> None:
    # An 8d button would fail for whoever clicks it: refused when opsbot starts.
    settings = settings_from_mapping(_demo_with(alerts__silence_durations=["1h", "8d"]),
                                     environ={"OPSBOT_DATABASE_URL": "sqlite://"})
    with pytest.raises(ConfigError) as err:
        Services.build(settings)
    assert str(err.value) == "alerts.silence_durations: <duration> is at most 7d; `8d` is longer"


def test_listen_port_is_ascii_digits() -> None:
    # OPSBOT_LISTEN and `opsbot simcluster --listen` took "٣٠٠٠" as port 3000.
    with pytest.raises(ConfigError):
        parse_listen("127.0.0.1:٣٠٠٠")
    with pytest.raises(ValueError, match="HOST:PORT"):
        simcluster_listen("127.0.0.1:٣٠٠٠")
    assert parse_listen("127.0.0.1:3000") == simcluster_listen("127.0.0.1:3000")


def test_replica_settings_from_variables() -> None:
    demo = str(ROOT / "examples/demo.yaml")
    settings = load_settings(environ={
        "OPSBOT_CONFIG": demo, "OPSBOT_LEADER_ELECTION": "false", "OPSBOT_LEASE_NAME": "ops",
        "OPSBOT_LEASE_NAMESPACE": "opsbot", "OPSBOT_LEASE_DURATION": "3",
        "OPSBOT_LEASE_RENEW_DEADLINE": "2", "OPSBOT_LEASE_RETRY_PERIOD": "0.5",
        "OPSBOT_HEARTBEAT_SECONDS": "1", "OPSBOT_SHUTDOWN_GRACE": "45"})
    replicas = settings.replicas
    assert (replicas.leader_election, replicas.lease_name, replicas.lease_namespace) == (
        False, "ops", "opsbot")
    assert (replicas.lease_duration_seconds, replicas.renew_deadline_seconds,
            replicas.retry_period_seconds) == (3.0, 2.0, 0.5)
    assert (replicas.heartbeat_seconds, replicas.stale_after_seconds,
            replicas.shutdown_grace_seconds) == (1.0, 4.0, 45.0)
    defaults = load_settings(environ={"OPSBOT_CONFIG": demo}).replicas
    assert defaults.leader_election is None and defaults.lease_duration_seconds == 15.0


@pytest.mark.parametrize(("variable", "value", "words"), [
    ("OPSBOT_SHUTDOWN_GRACE", "ten", "number of seconds"),
    ("OPSBOT_LEASE_DURATION", "١٥", "number of seconds"),  # digits 0-9 only
    ("OPSBOT_LEADER_ELECTION", "maybe", "true or false"),
    ("OPSBOT_LEASE_DURATION", "1", "retry_period_seconds < renew_deadline_seconds"),
    ("OPSBOT_LEASE_NAME", "Not A Name", "lease_name"),
])
def test_bad_replica_variables_are_named(variable: str, value: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        load_settings(environ={"OPSBOT_CONFIG": str(ROOT / "examples/demo.yaml"),
                               variable: value})


@pytest.mark.parametrize(("items", "words"), [
    (["x" * 76], "1 to 75 characters"),
    (["two\nlines"], "one line"),
    (["  "], "one line"),
    ([f"item {n}" for n in range(11)], "at most 10 items"),
])
def test_checklist_items_fit_a_slack_dialog(items: list[str], words: str) -> None:
    from bot.config import settings_from_mapping
    from bot.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        settings_from_mapping({
            "default_environment": "staging",
            "environments": {"staging": {"namespace": "shop-staging",
                                         "checklist": {"before": items}}},
        })
    assert words in str(err.value)


@pytest.mark.parametrize(("changes", "said"), [
    ({"registries": {"registry.example.com/shop": {}}}, "is not a registry host[:port]"),
    ({"registries": {"registry.example.com": {"url": "ftp://x"}}}, "must be an http(s) URL"),
    ({"registries": {"registry.example.com": {"credentials_file": "a.json",
                                              "credentials_secret": "pull"}}}, "not both"),
    ({"registries": {"registry.example.com": {"credentials_secret": "../pull"}}},
     "is not a Secret name"),
    ({"environments__prod__deploy": {"vulnerabilities": {"max_critical": -1}}}, "max_critical"),
    ({"environments__prod__deploy": {"vulnerabilities": {"on_exceed": "warn"}}}, "on_exceed"),
])
def test_registries_and_vulnerability_limits_are_validated(changes: dict[str, Any],
                                                           said: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings_from_mapping(_demo_with(**changes))
    assert said in str(err.value)
