"""The Slack Web API boundary: one client factory and one way to call it, so every failure is
counted, logged without tokens and raised as our own `SlackCallFailed`, saying whether it is
worth retrying and when.

The client never retries or sleeps inside a call: a call answers or fails within
`API_TIMEOUT_SECONDS`, and whoever called decides what to do next (the outbox's sender keeps
its own schedule, see sender.py), so nothing waits on Slack in passing."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.access import CachedGroups, StandIn, StaticGroups
from bot.config import Settings
from bot.metrics import SLACK_API_ERRORS

__all__ = ["SlackCallFailed", "call", "keep_connections", "slack_client", "slack_members"]

log = logging.getLogger("opsbot.slack")

API_TIMEOUT_SECONDS = 5
MAX_RETRY_AFTER_SECONDS = 900.0  # a Retry-After longer than this is taken as this

# Error codes Slack answers (HTTP 200, ok: false) for its own passing trouble.
TRANSIENT_ERRORS = frozenset({"internal_error", "fatal_error", "service_unavailable",
                              "request_timeout", "ratelimited"})


class SlackCallFailed(Exception):
    """A Web API call failed; `error` is Slack's error code (`not_in_channel`) or the fault.

    `transient`: trying again later may work (5xx, a timeout, a lost connection, a rate limit);
    otherwise Slack refused the call itself. `retry_after`: the seconds a 429 asked to wait."""

    def __init__(self, method: str, error: str, *, transient: bool = False,
                 retry_after: float | None = None) -> None:
        super().__init__(f"Slack {method} failed: {error}")
        self.method = method
        self.error = error
        self.transient = transient or retry_after is not None
        self.retry_after = retry_after


def slack_client(settings: Settings) -> AsyncWebClient:
    """A client for the configured API URL: a short timeout, and no retries inside a call."""
    token = settings.slack.bot_token.get_secret_value() if settings.slack.bot_token else None
    base_url = settings.slack.api_url
    if not base_url.endswith("/"):
        base_url += "/"
    return AsyncWebClient(
        token=token,
        base_url=base_url,
        timeout=API_TIMEOUT_SECONDS,
        retry_handlers=[],  # the default handlers sleep inside the call
    )


def keep_connections(client: AsyncWebClient) -> aiohttp.ClientSession:
    """One HTTP session for every call `client` makes from now on (made on the running loop):
    its connections to Slack are kept open and reused. Without one, the client opens a new
    session for each call, so each message posted or updated costs a new connection and TLS
    handshake. The caller closes it (`await session.close()`) when done; a call after that
    opens a session of its own again, as before."""
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=API_TIMEOUT_SECONDS))
    client.session = session
    return session


async def call(
    method: str, fn: Callable[..., Awaitable[AsyncSlackResponse]], /, **kwargs: Any
) -> AsyncSlackResponse:
    """Await `fn(**kwargs)` (a client method for `method`); failures become SlackCallFailed."""
    try:
        return await fn(**kwargs)
    except SlackApiError as exc:
        SLACK_API_ERRORS.labels(method=method).inc()
        raise _refused(method, exc.response) from exc
    except (TimeoutError, SlackClientError, aiohttp.ClientError, OSError) as exc:
        # No answer (or a failed upload to the file URL): the call may work later.
        SLACK_API_ERRORS.labels(method=method).inc()
        raise SlackCallFailed(method, type(exc).__name__, transient=True) from exc


def _refused(method: str, response: AsyncSlackResponse) -> SlackCallFailed:
    status = int(response.status_code or 0)
    data = response.data
    # A 5xx from a proxy or Slack's edge may carry HTML, not Slack's JSON.
    error = data.get("error") if isinstance(data, dict) else None
    if not error:
        error = f"http_{status}" if status >= 300 else "unknown_error"
    error = str(error)
    retry_after = None
    if status == 429:
        try:
            retry_after = float(response.headers.get("Retry-After", "1"))
        except ValueError:
            retry_after = 1.0
        retry_after = min(max(retry_after, 0.0), MAX_RETRY_AFTER_SECONDS)
    transient = status >= 500 or error in TRANSIENT_ERRORS
    return SlackCallFailed(method, error, transient=transient, retry_after=retry_after)


def slack_members(client: AsyncWebClient, settings: Settings) -> CachedGroups:
    """User group members from Slack (cached); the config's static members if Slack fails
    (not cached: Slack is asked again at the next check)."""
    fallback = StaticGroups(settings)

    async def fetch(group_id: str) -> frozenset[str]:
        try:
            response = await call("usergroups.users.list", client.usergroups_users_list,
                                  usergroup=group_id)
        except SlackCallFailed as exc:
            log.warning("members of user group %s not read from Slack (%s); using the "
                        "configured members this once", group_id, exc.error)
            raise StandIn(await fallback(group_id)) from exc
        users = response.get("users") or []
        return frozenset(str(user) for user in users)

    return CachedGroups(fetch, settings.slack.usergroup_cache_seconds)
