"""What opsbot accepts from Slack, checked before Bolt sees it: a bounded, signed, parseable
body whose shape is one we act on. Anything else is refused at once with a 4xx and one log
line, never with its body (HTTP in server.py; Socket Mode envelopes go through `check` too).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, unquote

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request

from bot.bodies import BodyGone, BodyTooLarge, BodyTooSlow, read_limited
from bot.metrics import SLACK_REQUESTS_REFUSED
from bot.storable import unstorable

__all__ = [
    "MAX_BODY_BYTES",
    "SIGNATURE_WINDOW_SECONDS",
    "Rejected",
    "check",
    "is_ssl_check",
    "parse_body",
    "read_body",
    "refused",
    "verify_signature",
]

log = logging.getLogger("opsbot.slack")

# A click carries the whole clicked message (up to 50 blocks) and a modal its state, form- and
# JSON-escaped: far below 1 MiB, which also bounds what one unsigned request can make us hold.
MAX_BODY_BYTES = 1024 * 1024
SIGNATURE_WINDOW_SECONDS = 5 * 60
MAX_FORM_FIELDS = 64


class Rejected(Exception):
    """The request is refused with `status`; `reason` names what is wrong, never its content."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def refused(rejected: Rejected, via: str) -> None:
    """The one log line (and count) of a refused request."""
    SLACK_REQUESTS_REFUSED.labels(status=str(rejected.status)).inc()
    log.warning("Slack %s refused with %d: %s", via, rejected.status, rejected.reason)


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body, refused (413) from Content-Length before reading, and while reading a
    chunked one; refused (408) if it has not all arrived within `BODY_SECONDS` (bot/bodies.py)."""
    try:
        return await read_limited(request, limit)
    except BodyTooLarge as exc:
        raise Rejected(413, str(exc)) from None
    except BodyGone as exc:
        raise Rejected(400, str(exc)) from None
    except BodyTooSlow as exc:
        raise Rejected(408, str(exc)) from None


def is_ssl_check(raw: bytes, content_type: str) -> bool:
    """Slack's certificate probe (`ssl_check=1`), which Slack sends unsigned; it is answered
    with an empty 200 and nothing in it is ever acted on."""
    if b"ssl_check" not in raw or len(raw) > 4096 \
            or _media_type(content_type) != "application/x-www-form-urlencoded":
        return False  # most requests: no need to parse the form twice
    try:
        fields = parse_qsl(raw.decode("ascii"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        return False
    return ("ssl_check", "1") in fields


def verify_signature(secret: str, headers: Mapping[str, str], raw: bytes, now: float) -> None:
    """Slack's v0 signature: HMAC-SHA256 of `v0:{timestamp}:{body}`, timestamp within 5
    minutes. Missing or garbled headers are a 401 like a wrong signature."""
    if not secret:
        raise Rejected(401, "no signing secret is configured")
    timestamp = headers.get("x-slack-request-timestamp", "")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise Rejected(401, "X-Slack-Request-Timestamp is missing or not a number")
    if abs(now - int(timestamp)) > SIGNATURE_WINDOW_SECONDS:
        raise Rejected(401, "X-Slack-Request-Timestamp is more than 5 minutes off")
    # Over bytes, not text: the body is not known to be UTF-8 yet, and headers may hold anything.
    base = b"v0:" + timestamp.encode() + b":" + raw
    expected = b"v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest().encode()
    given = headers.get("x-slack-signature", "").encode("latin-1", "replace")
    if not hmac.compare_digest(given, expected):
        raise Rejected(401, "X-Slack-Signature is missing or does not match")


def _media_type(content_type: str) -> str:
    return content_type.partition(";")[0].strip().lower()


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise Rejected(400, f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise Rejected(400, f"{what} is not a JSON object")
    return value


def form_pairs(text: str) -> list[tuple[str, str]]:
    """`parse_qsl(text, keep_blank_values=True, strict_parsing=True, errors="strict",
    max_num_fields=MAX_FORM_FIELDS)`, the same pairs and the same errors (ValueError,
    UnicodeDecodeError), in a third of its time: most of a slash command's fields need no
    decoding, and are taken as they are."""
    if text.count("&") >= MAX_FORM_FIELDS:
        raise ValueError("Max number of fields exceeded")
    if not text:
        return []
    pairs = []
    for field in text.split("&"):
        name, equals, value = field.partition("=")
        if not equals:
            raise ValueError(f"bad query field: {field[:40]!r}")
        pairs.append((_form_text(name), _form_text(value)))
    return pairs


def _form_text(text: str) -> str:
    if "+" in text:
        text = text.replace("+", " ")
    return unquote(text, errors="strict") if "%" in text else text


def parse_body(raw: bytes, content_type: str) -> dict[str, Any]:
    """A form (slash commands; interactivity as `payload=<json>`) or a JSON object (Events
    API), as one dict."""
    media = _media_type(content_type)
    if media not in ("application/x-www-form-urlencoded", "application/json"):
        raise Rejected(415, "the body is neither a form nor JSON")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected(400, "the body is not UTF-8") from None
    if media == "application/json":
        return _json_object(text, "the body")
    try:
        pairs = form_pairs(text)
    except (UnicodeDecodeError, ValueError):
        raise Rejected(400, "the body is not a well-formed form") from None
    fields = dict(pairs)
    if len(fields) != len(pairs):
        raise Rejected(400, "a form field is given twice")
    if "payload" in fields:
        return _json_object(fields["payload"], "the payload")
    return fields


# The shapes opsbot acts on. Strict: a number where Slack sends text is not Slack; extra fields
# are allowed, Slack adds them over time.

class _Shape(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


Text = Annotated[str, Field(min_length=1, max_length=255)]  # ids, names, a challenge


class _Id(_Shape):
    id: Text


class _Team(_Shape):
    id: str | None = None


class SlashCommand(_Shape):
    command: Text
    user_id: Text
    channel_id: Text
    trigger_id: Text
    text: str = ""
    team_id: str | None = None
    enterprise_id: str | None = None
    response_url: str | None = None


class _Interaction(_Shape):
    user: _Id
    team: _Team | None = None
    enterprise: _Team | None = None
    authorizations: list[dict[str, Any]] | None = None


class _Action(_Shape):
    action_id: Text
    value: str | None = None
    action_ts: str | None = None


class _Container(_Shape):
    channel_id: str | None = None
    message_ts: str | None = None
    is_ephemeral: bool | None = None


class _Message(_Shape):
    ts: str | None = None
    thread_ts: str | None = None


class BlockActions(_Interaction):
    trigger_id: Text
    actions: list[_Action] = Field(min_length=1)
    container: _Container | None = None
    channel: _Id | None = None
    message: _Message | None = None
    view: dict[str, Any] | None = None
    response_url: str | None = None


class _State(_Shape):
    values: dict[str, dict[str, dict[str, Any]]] = {}


class _View(_Shape):
    type: Literal["modal"]  # Bolt reads a submitted "workflow_step" view as a legacy step
    callback_id: Text
    id: str | None = None
    private_metadata: str = ""
    state: _State | None = None
    team_id: str | None = None
    app_installed_team_id: str | None = None


class _ResponseUrl(_Shape):
    response_url: str | None = None


class ViewSubmission(_Interaction):
    view: _View
    trigger_id: str | None = None
    response_urls: list[_ResponseUrl] = []


class UrlVerification(_Shape):
    challenge: Text


SHAPES: dict[str, type[_Shape]] = {
    "command": SlashCommand,
    "block_actions": BlockActions,
    "view_submission": ViewSubmission,
    "url_verification": UrlVerification,
}


def kind_of(body: Mapping[str, Any]) -> str | None:
    """`command` for a slash command (which has no type), else the payload's type if it is one
    we act on; None for anything else."""
    kind = body.get("type") if "type" in body else "command" if "command" in body else None
    return kind if isinstance(kind, str) and kind in SHAPES else None


def _printable(text: str, limit: int = 40) -> str:
    return "".join(c if c.isprintable() else "?" for c in text[:limit])


def _without_typed_text(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """The body without what a person typed (a command's text, a button's value, a form's
    inputs): that text is checked by the dispatcher, which answers the person with a usage
    message; everything else (ids, channels, timestamps) is Slack's and refused here."""
    rest = dict(body)
    if kind == "command":
        rest.pop("text", None)
    elif kind == "block_actions":
        rest["actions"] = [{k: v for k, v in action.items() if k != "value"}
                           for action in body.get("actions") or [] if isinstance(action, dict)]
    elif kind == "view_submission" and isinstance(body.get("view"), dict):
        rest["view"] = {k: v for k, v in body["view"].items() if k != "state"}
    return rest


def check(body: Any) -> str:
    """The request's kind once its shape is one opsbot acts on; Rejected (400) otherwise."""
    if not isinstance(body, dict):
        raise Rejected(400, "the payload is not a JSON object")
    kind = kind_of(body)
    if kind is None:
        raise Rejected(400, "not a request type opsbot handles")
    try:
        SHAPES[kind].model_validate(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(_printable(str(part)) for part in error["loc"]) or "the body"
        raise Rejected(400, f"malformed {kind}: {where}: {error['msg']}") from None
    problem = unstorable(_without_typed_text(kind, body))
    if problem is not None:
        raise Rejected(400, f"malformed {kind}: {problem.replace('_', ' ')}")
    return kind
