"""The Bolt app: approvals, checklists and forms, and, over Socket Mode, every envelope.

Over HTTP the server takes slash commands and follow-up buttons itself (`direct_intake` in
app.py), so this module, and Bolt with it, is imported only when a request Bolt handles first
arrives (`OnDemandBolt` in app.py), or at start-up in Socket Mode.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any

from slack_bolt import BoltResponse
from slack_bolt.adapter.starlette.async_handler import to_starlette_response
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.async_authorize import AsyncAuthorize
from slack_bolt.error import BoltUnhandledRequestError
from slack_bolt.logger.messages import (
    warning_client_prioritized_and_token_skipped,
    warning_token_skipped,
)
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.web.async_client import AsyncWebClient
from starlette.responses import Response

from bot.services import Services
from bot.slack.api import slack_client
from bot.slack.app import direct_intake, taker, work_starter
from bot.slack.blocks import ACTION_PREFIX
from bot.slack.checklist import register_checklist
from bot.slack.identity import SlackIdentity
from bot.slack.inbound import Rejected, kind_of, refused
from bot.slack.interactions import register_approvals
from bot.slack.tasks import BackgroundTasks

__all__ = ["BOLT_LOG", "bolt_request", "build_bolt_app", "respond"]

log = logging.getLogger("opsbot.slack")

# Bolt and the Socket Mode client log through this logger (Bolt copies its filters to every
# logger it makes), so what they would write about a request is stopped here, whatever the level.
BOLT_LOG = logging.getLogger("opsbot.slack.bolt")

# Messages of Bolt and slack_sdk that carry a request's body (or echo part of it).
_CARRY_BODIES = (
    "Invalid request signature detected",  # Bolt's verification (we verify before Bolt)
    "Unhandled request (",  # Bolt's hint for an unhandled request
    "A global middleware (",
    "Received message (",  # Socket Mode, at DEBUG: every envelope as received
    "Unsuccessful Bolt execution result",
    "Responding with",  # the response, which may echo the request (a challenge)
)
# Bolt reads SLACK_BOT_TOKEN on its own and warns that our client's token and authorize win
# over it; both come from the same setting, so the warnings would only alarm operators.
_TOKEN_WARNINGS = (warning_client_prioritized_and_token_skipped(), warning_token_skipped())


class _NoRequestBodies(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not message.startswith(_CARRY_BODIES) and message not in _TOKEN_WARNINGS


if not BOLT_LOG.filters:
    BOLT_LOG.addFilter(_NoRequestBodies())



def build_bolt_app(
    services: Services,
    *,
    client: AsyncWebClient | None = None,
    tasks: BackgroundTasks | None = None,
    identity: SlackIdentity | None = None,
) -> AsyncApp:
    """Bolt app for `settings.slack.command`, follow-up buttons and approval buttons; work
    runs in `tasks`.

    Requests reach it checked (bot/slack/inbound.py): over HTTP the server verifies the
    signature and the shape first, over Socket Mode the socket handler checks the shape. Who
    the bot is comes from `identity`, learned once at startup, never per request."""
    settings = services.settings
    web = client or slack_client(settings)
    background = tasks if tasks is not None else BackgroundTasks()
    app = AsyncApp(
        client=web,
        logger=BOLT_LOG,
        authorize=_Authorize(identity or SlackIdentity(web)),
        process_before_response=True,
        # The server verified the signature before Bolt saw the request (and Socket Mode
        # requests carry none); Bolt's own check would log the body of a failing one.
        request_verification_enabled=False,
        # A request no listener takes goes to on_error below, not to Bolt's warning with its body.
        raise_error_for_unhandled_request=True,
    )

    @app.error
    async def on_error(error: Exception, body: dict[str, Any]) -> BoltResponse | None:
        kind = kind_of(body) or "request"
        if isinstance(error, BoltUnhandledRequestError):
            unhandled = Rejected(404, f"no listener handles this {kind}")
            refused(unhandled, "request")
            return BoltResponse(status=404, body={"error": unhandled.reason})
        log.error("handling a Slack %s failed", kind, exc_info=error)
        return None

    start = work_starter(services, web, background)
    take = taker(services, start)
    direct = direct_intake(settings.slack.command, take)

    # Bolt answers Slack when a listener returns (process_before_response): each records
    # what arrived, acks, and leaves the work to the background, so the ack waits on one
    # short store write and on no polling. Over HTTP the server takes these two kinds
    # itself (`direct_intake`); Socket Mode envelopes come this way.
    @app.command(settings.slack.command)
    async def on_command(ack: AsyncAck, body: dict[str, Any]) -> None:
        await direct("command", body)
        await ack()

    @app.action(re.compile(re.escape(ACTION_PREFIX) + ".*"))
    async def on_button(ack: AsyncAck, body: dict[str, Any]) -> None:
        await direct("block_actions", body)
        await ack()

    # Approve / Deny under approval requests; refusals reach only the clicker (ephemeral).
    register_approvals(app, services, web, take, background)
    register_checklist(app, services, web)
    return app


class _Authorize(AsyncAuthorize):
    """Bolt's `authorize`: the bot token with what `auth.test` said once it answered (the
    identity learned at startup); until then the token alone, which is all opsbot's listeners
    need. Bolt would otherwise call `auth.test` itself, per request, until it answered."""

    def __init__(self, identity: SlackIdentity) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._identity = identity

    async def __call__(self, *, enterprise_id: str | None, team_id: str | None,
                       user_id: str | None, **_: Any) -> AuthorizeResult:
        known = self._identity.known or {}
        return AuthorizeResult(
            enterprise_id=enterprise_id or known.get("enterprise_id"),
            team_id=team_id or known.get("team_id"),
            bot_token=self._identity.token,
            bot_id=known.get("bot_id"),
            bot_user_id=known.get("user_id"),
            user_id=user_id,
        )


def bolt_request(body: dict[str, Any], *, mode: str = "http",
                 headers: Mapping[str, Any] | None = None) -> AsyncBoltRequest:
    """The checked body as Bolt's request. Over HTTP Bolt gets it as JSON, so it never parses
    the wire form itself (its parser drops a slash command whose text contains `payload`)."""
    try:
        if mode == "http":
            return AsyncBoltRequest(body=json.dumps(body),
                                    headers={"content-type": "application/json"})
        return AsyncBoltRequest(body=body, mode=mode, headers=dict(headers or {}))
    except (AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:
        # Bolt reads ids from many optional places; one with an unexpected type is not Slack.
        raise Rejected(400, f"a field Bolt reads has the wrong type ({type(exc).__name__})") \
            from None


async def respond(app: AsyncApp, body: dict[str, Any]) -> Response:
    """Bolt's answer to a checked HTTP request, as the server sends it."""
    return to_starlette_response(await app.async_dispatch(bolt_request(body)))
