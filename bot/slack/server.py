"""`opsbot serve`: the web server around the Bolt app, with health, readiness and metrics.

Slack reaches us over HTTP (`POST /slack/events`, signed) or, when an app token is set, over
Socket Mode; either way the probes and `/metrics` are served over HTTP.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from bot import messages
from bot.alerts.intake import alertmanager_route
from bot.config import Settings
from bot.errors import ConfigError
from bot.numbers import is_digits
from bot.services import Services
from bot.slack.api import slack_client
from bot.slack.app import build_bolt_app, build_services
from bot.slack.recovery import recover
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
) -> Starlette:
    """The ASGI app; with `app_token`, Slack arrives over Socket Mode instead of /slack/events."""
    client = slack_client(services.settings)
    tasks = BackgroundTasks()
    bolt = build_bolt_app(services, client=client, tasks=tasks, socket_mode=app_token is not None)
    handler = AsyncSlackRequestHandler(bolt)

    async def events(request: Request) -> Response:
        return await handler.handle(request)

    async def healthz(_: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(_: Request) -> Response:
        problem = await readiness(services)
        return PlainTextResponse(problem or "ready", status_code=503 if problem else 200)

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await recover(services, client)
        # The scheduler expires what fell due while opsbot was down (messages updated) and
        # times every open request from now on.
        await services.start(alerts=True)
        socket = AsyncSocketModeHandler(bolt, app_token) if app_token else None
        if socket is not None:
            await socket.connect_async()  # type: ignore[no-untyped-call]
            log.info("connected to Slack over Socket Mode")
        try:
            yield
        finally:
            if socket is not None:
                await socket.close_async()  # type: ignore[no-untyped-call]
            await tasks.drain(shutdown_grace)
            await services.stop()

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
        config = uvicorn.Config(app, host=host, port=port, lifespan="on",
                                timeout_graceful_shutdown=int(SHUTDOWN_GRACE_SECONDS))
        uvicorn.Server(config).run()
    finally:
        services.close()
