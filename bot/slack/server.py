"""`opsbot serve`: the web server around the Bolt app, with health, readiness and metrics.

Slack reaches us over HTTP (`POST /slack/events`, signed) or, when an app token is set, over
Socket Mode; either way the probes and `/metrics` are served over HTTP. What arrives is checked
(bot/slack/inbound.py) before Bolt sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from slack_bolt.adapter.starlette.async_handler import to_starlette_response
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from bot import messages
from bot.alerts.intake import alertmanager_route
from bot.config import Settings
from bot.errors import ConfigError
from bot.metrics import ACK_SECONDS
from bot.numbers import is_digits
from bot.services import Services
from bot.slack import inbound
from bot.slack.api import slack_client
from bot.slack.app import build_bolt_app, build_services
from bot.slack.identity import RETRY_SECONDS, SlackIdentity
from bot.slack.recovery import recover
from bot.slack.sender import SlackSender
from bot.slack.socket_mode import CheckedSocketModeHandler
from bot.slack.tasks import BackgroundTasks

__all__ = ["create_app", "parse_listen", "readiness", "serve"]

log = logging.getLogger("opsbot.slack")

READY_TIMEOUT_SECONDS = 5.0
SHUTDOWN_GRACE_SECONDS = 20.0


async def readiness(services: Services) -> str | None:
    """None when ready; otherwise why not (the store does not answer, no runbooks)."""
    if len(services.catalog) == 0:
        return "no runbooks loaded"
    try:
        await asyncio.wait_for(asyncio.to_thread(services.store.recent_executions, 1),
                               READY_TIMEOUT_SECONDS)
    except Exception as exc:
        log.warning("readiness: the store does not answer: %s", type(exc).__name__)
        return "the store does not answer"
    return None


def create_app(
    services: Services,
    *,
    app_token: str | None = None,
    routes: Sequence[BaseRoute] = (),
    shutdown_grace: float = SHUTDOWN_GRACE_SECONDS,
    auth_retry: tuple[float, float] = RETRY_SECONDS,
) -> Starlette:
    """The ASGI app; with `app_token`, Slack arrives over Socket Mode instead of /slack/events.
    `auth_retry` is how often Slack's `auth.test` is retried at startup (first, longest)."""
    client = slack_client(services.settings)
    tasks = BackgroundTasks()
    identity = SlackIdentity(client)
    bolt = build_bolt_app(services, client=client, tasks=tasks, identity=identity)
    secret = services.settings.slack.signing_secret
    signing_secret = secret.get_secret_value() if secret else ""

    async def events(request: Request) -> Response:
        started = time.monotonic()
        try:
            raw = await inbound.read_body(request)
            content_type = request.headers.get("content-type", "")
            if inbound.is_ssl_check(raw, content_type):
                return Response(status_code=200)
            inbound.verify_signature(signing_secret, request.headers, raw, time.time())
            body = inbound.parse_body(raw, content_type)
            inbound.check(body)
            bolt_request = inbound.bolt_request(body)
        except inbound.Rejected as exc:
            inbound.refused(exc, "request")
            return JSONResponse({"error": exc.reason}, status_code=exc.status)
        response = to_starlette_response(await bolt.async_dispatch(bolt_request))
        ACK_SECONDS.labels(transport="http").observe(time.monotonic() - started)
        return response

    async def healthz(_: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(_: Request) -> Response:
        problem = await readiness(services)
        return PlainTextResponse(problem or "ready", status_code=503 if problem else 200)

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    sender = SlackSender(client, services.store)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await recover(services)
        # The scheduler expires what fell due while opsbot was down (messages updated) and
        # times every open request from now on.
        await services.start(alerts=True)
        # Then the sender: what a previous process left in the outbox goes first (and the
        # scheduler has made its table, which SQLite cannot do next to a busy writer).
        await sender.start()
        socket = CheckedSocketModeHandler(bolt, app_token) if app_token else None
        if socket is not None:
            await socket.connect_async()  # type: ignore[no-untyped-call]
            log.info("connected to Slack over Socket Mode")
        # Not awaited: commands are served while Slack's API is still unreachable.
        learning = asyncio.create_task(identity.learn(auth_retry), name="opsbot auth.test")
        try:
            yield
        finally:
            learning.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await learning
            if socket is not None:
                await socket.close_async()  # type: ignore[no-untyped-call]
            await tasks.drain(shutdown_grace)
            await services.stop()
            await sender.stop()  # what is not delivered by then waits in the store

    all_routes: list[BaseRoute] = [
        alertmanager_route(services.settings, services.store, services.alerts.wake),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    if app_token is None:
        all_routes.append(Route("/slack/events", events, methods=["POST"]))
    all_routes += routes
    return Starlette(routes=all_routes, lifespan=lifespan)


def parse_listen(listen: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 hosts in brackets) as a host and a port number."""
    host, sep, port = listen.rpartition(":")
    if not sep or not is_digits(port) or not 0 <= int(port) <= 65535:
        raise ConfigError(messages.bad_listen(listen))
    return host.strip("[]") or "0.0.0.0", int(port)


def check_slack_settings(settings: Settings) -> None:
    """Refuse to start without the secrets the chosen mode needs, naming the variables."""
    slack = settings.slack
    missing = [] if slack.bot_token else ["SLACK_BOT_TOKEN"]
    if slack.app_token is None and slack.signing_secret is None:
        missing.append("SLACK_SIGNING_SECRET")
    if missing:
        raise ConfigError(messages.slack_settings_missing(missing))


def serve(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM; running executions get a grace period, then are interrupted."""
    check_slack_settings(settings)
    host, port = parse_listen(settings.listen)
    services = build_services(settings)
    try:
        app_token = settings.slack.app_token
        app = create_app(services, app_token=app_token.get_secret_value() if app_token else None)
        # log_config=None: uvicorn's records go through the root handler, so they follow
        # --log-format (json) and its secret masking like every other line.
        config = uvicorn.Config(app, host=host, port=port, lifespan="on", log_config=None,
                                timeout_graceful_shutdown=int(SHUTDOWN_GRACE_SECONDS))
        uvicorn.Server(config).run()
    finally:
        services.close()
