"""Socket Mode with the checks of `/slack/events`: an envelope whose payload is not one opsbot
acts on is left unacked with one log line, and the socket goes on serving the next one."""

from __future__ import annotations

import time
from typing import Any

from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.adapter.socket_mode.async_internals import send_async_response
from slack_bolt.adapter.socket_mode.internals import build_headers
from slack_bolt.async_app import AsyncApp
from slack_sdk.socket_mode.aiohttp import SocketModeClient

from bot.metrics import ACK_SECONDS
from bot.slack import inbound
from bot.slack.app import BOLT_LOG

__all__ = ["CheckedSocketModeHandler"]

VIA = "Socket Mode envelope"


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

    def __init__(self, app: AsyncApp, app_token: str) -> None:
        # As Bolt's own __init__, with our client (Bolt's would open a session for nothing).
        self.app = app
        self.app_token = app_token
        self.client = _CheckedClient(app_token=app_token, logger=BOLT_LOG, web_client=app.client,
                                     ping_interval=10)
        self.client.socket_mode_request_listeners.append(self.handle)

    async def handle(self, client: Any, req: Any) -> None:
        started = time.time()
        try:
            inbound.check(req.payload)
            request = inbound.bolt_request(req.payload, mode="socket_mode",
                                           headers=build_headers(req))
        except inbound.Rejected as exc:
            inbound.refused(exc, VIA)
            return
        response = await self.app.async_dispatch(request)
        await send_async_response(client, req, response, started)
        ACK_SECONDS.labels(transport="socket").observe(time.time() - started)
