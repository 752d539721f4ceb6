"""The shipped Slack app manifest matches the bot: its slash command and request URLs, and a
scope for every Web API method opsbot calls (a missing scope fails only in a real workspace)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from bot.config import SlackConfig

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "examples" / "slack-manifest.yaml"

# Slack's documented scope for each method opsbot calls; None: no scope needed.
SCOPES = {
    "chat.postMessage": "chat:write",
    "chat.update": "chat:write",
    "chat.postEphemeral": "chat:write",
    "usergroups.users.list": "usergroups:read",
    "files.upload_v2": "files:write",
    "views.open": None,
    "auth.test": None,
    "apps.connections.open": None,  # the app-level token's connections:write, not a bot scope
}


def methods_called() -> set[str]:
    """Every Web API method named at a call site in the Slack front end (`call(...)`, or the
    outbox sender's planned `_Call(...)`)."""
    called: set[str] = set()
    for path in (ROOT / "bot" / "slack").glob("*.py"):
        called |= set(re.findall(r'[Cc]all\(\s*"([A-Za-z_.0-9]+)"', path.read_text()))
    return called


def test_manifest_grants_a_scope_for_every_method_called() -> None:
    manifest = yaml.safe_load(MANIFEST.read_text())
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    called = methods_called()
    assert {"chat.postMessage", "chat.update", "usergroups.users.list"} <= called
    unknown = called - SCOPES.keys()
    assert not unknown, f"add the scope of {unknown} to SCOPES and the manifest"
    needed = {SCOPES[m] for m in called} - {None}
    assert needed <= scopes, f"manifest lacks {needed - scopes}"
    assert scopes - needed <= {"commands", "chat:write.public"}, "a scope nothing uses"


def test_manifest_command_and_urls_match_the_server() -> None:
    manifest = yaml.safe_load(MANIFEST.read_text())
    (command,) = manifest["features"]["slash_commands"]
    assert command["command"] == SlackConfig().command
    assert command["url"].endswith("/slack/events")
    interactivity = manifest["settings"]["interactivity"]
    assert interactivity["is_enabled"] is True
    assert interactivity["request_url"].endswith("/slack/events")
