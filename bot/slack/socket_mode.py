"""Socket Mode with the checks of `/slack/events`: an envelope whose payload is not one opsbot
acts on is left unacked with one log line, and the socket goes on serving the next one.

The first connection is dialled in the background: while Slack's API cannot be reached the
process serves its probes, the Alertmanager webhook and its runbooks, and says once that it is
retrying; a refused app token is said once and shown by `/readyz`."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.adapter.socket_mode.async_internals import send_async_response
from slack_bolt.adapter.socket_mode.internals import build_headers
from slack_bolt.async_app import AsyncApp
from slack_sdk.socket_mode.aiohttp import SocketModeClient

from bot.metrics import ACK_SECONDS
from bot.pacing import Foreground
from bot.slack import inbound
from bot.slack.api import SlackCallFailed, call
from bot.slack.bolt_app import BOLT_LOG, bolt_request

__all__ = ["CheckedSocketModeHandler"]

VIA = "Socket Mode envelope"

log = logging.getLogger("opsbot.slack")


class _CheckedClient(SocketModeClient):
    async def run_message_listeners(self, message: dict[str, Any], raw_message: str) -> None:
        # slack_sdk cannot represent a payload that is neither an object nor text, and would
        # log a traceback for it.
        if "envelope_id" in message and not isinstance(message.get("payload"), dict | str):
            inbound.refused(inbound.Rejected(400, "the payload is not a JSON object"), VIA)
            return
        await super().run_message_listeners(message, raw_message)


class CheckedSocketModeHandler(AsyncSocketModeHandler):
    """Bolt's Socket Mode handler, checking each envelope's payload before Bolt sees it."""

    def __init__(self, app: AsyncApp, app_token: str,
                 foreground: Foreground | None = None) -> None:
        # Envelopes waiting for their ack hold background work back (bot/pacing.py).
        self.foreground = foreground or Foreground()
        # As Bolt's own __init__, with our client (Bolt's would open a session for nothing).
        self.app = app
        self.app_token = app_token
        self.client = _CheckedClient(app_token=app_token, logger=BOLT_LOG, web_client=app.client,
                                     ping_interval=10)
        self.client.socket_mode_request_listeners.append(self.handle)
        self.refused: str | None = None  # Slack's error when it refused the app token

    async def dial(self, retry: tuple[float, float]) -> None:
        """Connect, retrying with `retry` = (first delay, longest) while Slack cannot be
        reached: one warning while it fails, one line when connected. Once connected, the
        client reconnects by itself. A refused token is not retried (`refused` says why)."""
        delay, longest = retry
        failing = False
        while True:
            try:
                opened = await call("apps.connections.open",
                                    self.client.web_client.apps_connections_open,
                                    app_token=self.app_token)
                break
            except SlackCallFailed as exc:
                if not exc.transient:
                    self.refused = exc.error
                    log.error("Slack refused the app token for Socket Mode (%s); no commands "
                              "arrive until SLACK_APP_TOKEN is fixed and opsbot restarted",
                              exc.error)
                    return
                if not failing:
                    log.warning("cannot reach Slack for Socket Mode (%s); the webhook and "
                                "probes are served meanwhile, retrying until Slack answers",
                                exc.error)
                    failing = True
                await asyncio.sleep(exc.retry_after or delay)
                delay = min(delay * 2, longest)
        self.client.wss_uri = str(opened["url"])
        await self.connect_async()  # type: ignore[no-untyped-call]
        log.info("connected to Slack over Socket Mode")

    async def handle(self, client: Any, req: Any) -> None:
        self.foreground.begin()
        try:
            await self._answer(client, req)
        finally:
            self.foreground.end()

    async def _answer(self, client: Any, req: Any) -> None:
        started = time.time()
        try:
            inbound.check(req.payload)
            request = bolt_request(req.payload, mode="socket_mode", headers=build_headers(req))
        except inbound.Rejected as exc:
            inbound.refused(exc, VIA)
            return
        response = await self.app.async_dispatch(request)
        await send_async_response(client, req, response, started)
        ACK_SECONDS.labels(transport="socket").observe(time.time() - started)
