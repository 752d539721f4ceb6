"""The Slack Web API boundary: one client factory and one way to call it, so every failure is
counted, logged without tokens and raised as our own `SlackCallFailed`."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.access import CachedGroups, StandIn, StaticGroups
from bot.config import Settings
from bot.metrics import SLACK_API_ERRORS

__all__ = ["SlackCallFailed", "call", "show_message", "slack_client", "slack_members"]

log = logging.getLogger("opsbot.slack")

API_TIMEOUT_SECONDS = 15


class SlackCallFailed(Exception):
    """A Web API call failed; `error` is Slack's error code (`not_in_channel`) or the fault."""

    def __init__(self, method: str, error: str) -> None:
        super().__init__(f"Slack {method} failed: {error}")
        self.method = method
        self.error = error


def slack_client(settings: Settings) -> AsyncWebClient:
    """A client for the configured API URL; retries lost connections and rate limits."""
    token = settings.slack.bot_token.get_secret_value() if settings.slack.bot_token else None
    base_url = settings.slack.api_url
    if not base_url.endswith("/"):
        base_url += "/"
    return AsyncWebClient(
        token=token,
        base_url=base_url,
        timeout=API_TIMEOUT_SECONDS,
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(max_retry_count=1),
            AsyncRateLimitErrorRetryHandler(max_retry_count=2),
        ],
    )


async def call(
    method: str, fn: Callable[..., Awaitable[AsyncSlackResponse]], /, **kwargs: Any
) -> AsyncSlackResponse:
    """Await `fn(**kwargs)` (a client method for `method`); failures become SlackCallFailed."""
    try:
        return await fn(**kwargs)
    except SlackApiError as exc:
        error = str(exc.response.get("error", "unknown_error"))
        SLACK_API_ERRORS.labels(method=method).inc()
        raise SlackCallFailed(method, error) from exc
    except (TimeoutError, SlackClientError, aiohttp.ClientError, OSError) as exc:
        SLACK_API_ERRORS.labels(method=method).inc()
        raise SlackCallFailed(method, type(exc).__name__) from exc


async def show_message(
    client: AsyncWebClient, text: str, blocks: list[dict[str, Any]], *,
    at: tuple[str | None, str | None], post_to: str | None,
) -> tuple[str, str] | None:
    """One message shown in place: updated where it stands (`at`, its channel and ts), else
    posted to `post_to` (nowhere if None). Returns where a newly posted message went."""
    channel, ts = at
    if channel and ts:
        await call("chat.update", client.chat_update, channel=channel, ts=ts, text=text,
                   blocks=blocks)
        return None
    if not post_to:
        return None
    response = await call("chat.postMessage", client.chat_postMessage, channel=post_to,
                          text=text, blocks=blocks, unfurl_links=False, unfurl_media=False)
    return str(response.get("channel") or post_to), str(response["ts"])


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
