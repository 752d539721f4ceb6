from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import load_settings
from bot.errors import ConfigError, UnknownName

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
