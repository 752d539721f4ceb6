"""Requests as Slack sends them: signed bodies of slash commands and button clicks.

The signature is Slack's v0 scheme: HMAC-SHA256 over `v0:{timestamp}:{body}` with the app's
signing secret, sent as `X-Slack-Signature: v0=<hex>` with `X-Slack-Request-Timestamp`.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from typing import Any
from urllib.parse import urlencode

__all__ = [
    "SIGNING_SECRET",
    "block_actions_body",
    "signed_headers",
    "slash_command_body",
]

SIGNING_SECRET = "standin-signing-secret"
TEAM_ID = "T0STANDIN"
_trigger_ids = itertools.count(1)


def _trigger_id() -> str:
    return f"{next(_trigger_ids)}.{int(time.time())}.standin{time.monotonic_ns() % 10**9:09d}"


def signed_headers(
    body: str | bytes, secret: str = SIGNING_SECRET, *, timestamp: int | None = None,
    content_type: str = "application/x-www-form-urlencoded",
) -> dict[str, str]:
    """Slack's headers for `body` (text, or bytes that need not be UTF-8)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    base = f"v0:{ts}:".encode() + (body if isinstance(body, bytes) else body.encode())
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
    }


def slash_command_body(
    user_id: str, text: str, *, channel_id: str = "C0OPS", command: str = "/ops",
    user_name: str | None = None, trigger_id: str | None = None,
) -> str:
    """A form-encoded slash command; every call gets its own trigger_id unless given one.
    Like Slack, it sends `&`, `<` and `>` of the typed text escaped."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return urlencode({
        "token": "deprecated-verification-token",
        "team_id": TEAM_ID,
        "team_domain": "standin",
        "channel_id": channel_id,
        "channel_name": "ops",
        "user_id": user_id,
        "user_name": user_name or user_id.lower(),
        "command": command,
        "text": text,
        "api_app_id": "A0OPSBOT",
        "response_url": f"https://hooks.slack.test/commands/{TEAM_ID}/{user_id}",
        "trigger_id": trigger_id or _trigger_id(),
    })


def block_actions_body(
    user_id: str, action: dict[str, Any], *, channel_id: str, message: dict[str, Any],
    trigger_id: str | None = None,
) -> str:
    """`payload=<json>` of a click on `action` (a button element) in `message`."""
    payload = {
        "type": "block_actions",
        "user": {"id": user_id, "username": user_id.lower(), "team_id": TEAM_ID},
        "api_app_id": "A0OPSBOT",
        "token": "deprecated-verification-token",
        "container": {"type": "message", "message_ts": message["ts"], "channel_id": channel_id,
                      "is_ephemeral": False},
        "trigger_id": trigger_id or _trigger_id(),
        "team": {"id": TEAM_ID, "domain": "standin"},
        "channel": {"id": channel_id, "name": "ops"},
        "message": message,
        "response_url": f"https://hooks.slack.test/actions/{TEAM_ID}/{user_id}",
        "actions": [{
            "type": action["type"],
            "action_id": action["action_id"],
            "block_id": action.get("block_id", "b"),
            "text": action["text"],
            "value": action["value"],
            "action_ts": f"{time.time():.6f}",
        }],
    }
    return urlencode({"payload": json.dumps(payload)})
