"""Who opsbot is in Slack, asked once (`auth.test`) in the background at startup and retried
until Slack answers, so no command or click ever waits on, or fails with, that call.

Bolt would otherwise call `auth.test` on the first request after each start and answer every
request with an error while Slack's API is unreachable; Slack does not retry slash commands.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.api import SlackCallFailed, call

__all__ = ["RETRY_SECONDS", "SlackIdentity"]

log = logging.getLogger("opsbot.slack")

RETRY_SECONDS = (1.0, 60.0)  # first delay, doubling up to the second


class SlackIdentity:
    """What `auth.test` said once it answered (`known`); until then None. Bolt's `authorize`
    (bot/slack/bolt_app.py) gives the bot token with it, or the token alone, which is all
    opsbot's listeners need."""

    def __init__(self, client: AsyncWebClient) -> None:
        self._client = client
        self.known: dict[str, Any] | None = None

    @property
    def token(self) -> str | None:
        return self._client.token

    async def learn(self, retry: tuple[float, float] = RETRY_SECONDS) -> None:
        """`auth.test` until it answers; one log line while it fails, one when it answers."""
        delay, longest = retry
        failing = False
        while True:
            try:
                response = await call("auth.test", self._client.auth_test)
            except SlackCallFailed as exc:
                if not failing:
                    log.warning("Slack auth.test failed (%s); commands are served meanwhile, "
                                "retrying until Slack answers", exc.error)
                    failing = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, longest)
                continue
            self.known = {key: response.get(key) for key in
                          ("enterprise_id", "team_id", "user_id", "bot_id", "user", "team",
                           "url")}
            log.info("signed in to Slack as %s (%s) in %s", self.known["user"],
                     self.known["user_id"], self.known["team"])
            return
