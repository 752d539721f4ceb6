"""`opsbot serve`: the web server around the Bolt app, with health, readiness and metrics.

Slack reaches us over HTTP (`POST /slack/events`, signed) or, when an app token is set, over
Socket Mode; either way the probes and `/metrics` are served over HTTP. What arrives is checked
(bot/slack/inbound.py) before Bolt sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Message, Receive, Scope, Send

from bot import messages
from bot.alerts.intake import alertmanager_route
from bot.config import Settings
from bot.errors import ConfigError
from bot.metrics import ACK_SECONDS
from bot.numbers import is_digits
from bot.pacing import collect_while_quiet
from bot.records import StoreRecords
from bot.services import Services
from bot.slack import inbound, queue
from bot.slack.api import keep_connections, slack_client
from bot.slack.app import OnDemandBolt, build_services, direct_intake, taker, work_starter
from bot.slack.identity import RETRY_SECONDS, SlackIdentity
from bot.slack.recovery import report_interrupted
from bot.slack.sender import SlackSender
from bot.slack.tasks import BackgroundTasks

if TYPE_CHECKING:
    from bot.slack.socket_mode import CheckedSocketModeHandler

__all__ = ["OpsbotApp", "create_app", "parse_listen", "readiness", "serve"]

log = logging.getLogger("opsbot.slack")
#: One line per HTTP request, logged once it is answered (`OpsbotApp`).
ACCESS_LOG = logging.getLogger("opsbot.access")

READY_TIMEOUT_SECONDS = 5.0
HTTP_DRAIN_SECONDS = 10
#: The collector's first threshold in `serve` (Python's default: 700).
YOUNG_OBJECTS = 10_000
_CLOSE = {"connection": "close"}


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


Endpoint = Callable[[Request], Awaitable[Response]]


class OpsbotApp(Starlette):
    """Starlette, with the endpoints every ack and every notification go through served
    directly: a POST to one of `hot` skips Starlette's routing and middleware (a tenth of an
    ack's time). Their endpoints answer every error themselves; an exception escaping one is
    uvicorn's 500, as Starlette's would be. Every other request goes through Starlette.

    Each HTTP request's access line (`opsbot.access`, in uvicorn's form) is logged once the
    answer is sent: uvicorn logs it before it writes the answer (`serve` turns that off), and
    formatting and writing the line took a twentieth of an ack's time at concurrency 1."""

    def __init__(self, *, hot: dict[str, Endpoint], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hot = hot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        status = 500  # uvicorn's answer when the app fails before it answers
        try:
            endpoint = self.hot.get(scope["path"]) if scope["method"] == "POST" else None
            if endpoint is not None:
                response = await endpoint(Request(scope, receive))
                status = response.status_code
                await response(scope, receive, send)
                return

            async def sending(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            await super().__call__(scope, receive, sending)
        finally:
            if ACCESS_LOG.isEnabledFor(logging.INFO):
                ACCESS_LOG.info(*access_line(scope, status))


def access_line(scope: Scope, status: int) -> tuple[Any, ...]:
    """uvicorn's access line for a request and the status it was answered with, as the
    arguments of a log call: `127.0.0.1:50312 - "POST /slack/events HTTP/1.1" 200`. Not
    uvicorn's own helpers (`uvicorn.protocols.utils`): they decode the query string as ASCII
    (h11 lets only ASCII through, another parser may not); latin-1 decodes any bytes, so the
    line logged after the answer cannot fail."""
    client = scope.get("client")
    path = scope["raw_path"].decode("latin-1") if scope.get("raw_path") else scope["path"]
    if scope.get("query_string"):
        path += "?" + scope["query_string"].decode("latin-1")
    return ('%s - "%s %s HTTP/%s" %d', f"{client[0]}:{client[1]}" if client else "",
            scope["method"], path.replace('"', "%22"), scope.get("http_version", "1.1"), status)


def create_app(
    services: Services,
    *,
    app_token: str | None = None,
    routes: Sequence[BaseRoute] = (),
    shutdown_grace: float | None = None,
    auth_retry: tuple[float, float] = RETRY_SECONDS,
) -> OpsbotApp:
    """The ASGI app; with `app_token`, Slack arrives over Socket Mode instead of /slack/events.
    `auth_retry` is how often Slack's `auth.test` is retried at startup (first, longest).
    `shutdown_grace` (default `replicas.shutdown_grace_seconds`) is how long running work may
    go on after SIGTERM before it is interrupted."""
    grace = services.settings.replicas.shutdown_grace_seconds if shutdown_grace is None \
        else shutdown_grace
    stopping = asyncio.Event()
    client = slack_client(services.settings)
    tasks = BackgroundTasks()
    identity = SlackIdentity(client)
    bolt = OnDemandBolt(services, client=client, tasks=tasks, identity=identity)
    starter = work_starter(services, client, tasks)
    # Commands and follow-up buttons, most of what arrives, are recorded and acked here;
    # Bolt dispatches the rest (approvals, checklists, forms).
    direct = direct_intake(services.settings.slack.command, taker(services, starter))
    secret = services.settings.slack.signing_secret
    signing_secret = secret.get_secret_value() if secret else ""
    socket: CheckedSocketModeHandler | None = None  # made in the lifespan (it needs the loop)
    # The HTTP series exists only where Slack comes over HTTP.
    acked = None if app_token else ACK_SECONDS.labels(transport="http")

    async def events(request: Request) -> Response:
        services.foreground.begin()
        try:
            return await answer(request)
        finally:
            services.foreground.end()

    async def answer(request: Request) -> Response:
        started = time.monotonic()
        try:
            raw = await inbound.read_body(request)
            content_type = request.headers.get("content-type", "")
            if inbound.is_ssl_check(raw, content_type):
                return Response(status_code=200)
            inbound.verify_signature(signing_secret, request.headers, raw, time.time())
            body = inbound.parse_body(raw, content_type)
            kind = inbound.check(body)
            if await direct(kind, body):
                response: Response = Response(status_code=200)
            else:
                response = await bolt.respond(body)
        except inbound.Rejected as exc:
            inbound.refused(exc, "request")
            # A body cut off midway (408) leaves the rest of it on the connection: closed.
            return JSONResponse({"error": exc.reason}, status_code=exc.status,
                                headers=_CLOSE if exc.status == 408 else None)
        if acked is not None:
            acked.observe(time.monotonic() - started)
        return response

    async def healthz(_: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(_: Request) -> Response:
        problem = "shutting down" if stopping.is_set() else await readiness(services)
        if problem is None and socket is not None and socket.refused:
            problem = f"Slack refused the app token ({socket.refused})"
        leadership = services.leadership
        body: dict[str, object] = {
            "ready": problem is None,
            "replica": services.store.replica,
            "leader": leadership.detail() if leadership else {"leader": False},
        }
        if problem:
            body["problem"] = problem
        return JSONResponse(body, status_code=503 if problem else 200)

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    sender = SlackSender(client, services.store, owner=services.outbox_owner or None,
                         foreground=services.foreground)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        # Every Web API call of this process (Bolt's included) reuses kept connections, from
        # the first (at start-up) to the last (the outbox's, at shutdown).
        session = keep_connections(client)
        try:
            async with serving():
                yield
        finally:
            await session.close()

    @asynccontextmanager
    async def serving() -> AsyncIterator[None]:
        # The leader (this process alone on SQLite; the Lease holder on PostgreSQL) marks
        # what dead processes left running interrupted (messages updated), then its scheduler
        # expires what fell due meanwhile and times every open request from now on.
        async def interrupted(ids: list[str]) -> None:
            await report_interrupted(services, ids)

        services.on_interrupted = interrupted

        # Acked and never started (the process died in between): started if fresh, else the
        # asker hears that nothing ran. Alone on its database, everything found is such.
        async def unstarted(stale_after: timedelta | None) -> None:
            await queue.resume_unstarted(
                services, starter, timedelta(0) if stale_after is None else queue.ORPHANED_AFTER,
                holding=tasks.keys)

        services.on_unstarted = unstarted
        await services.start_serving()
        # Then the sender: what a previous process left in the outbox goes first (and the
        # scheduler has made its table, which SQLite cannot do next to a busy writer).
        await sender.start()
        nonlocal socket
        if app_token:
            # Imported only in Socket Mode: the websocket client is not needed over HTTP.
            from bot.slack.socket_mode import CheckedSocketModeHandler

            socket = CheckedSocketModeHandler(await bolt.app(), app_token, services.foreground)
        async def learn_identity() -> None:
            await identity.learn(auth_retry)
            records = services.dispatcher.records
            url = (identity.known or {}).get("url")
            if isinstance(records, StoreRecords) and isinstance(url, str):
                # `executions` links each run to its message: the workspace's permalink form.
                records.workspace_url = url

        # Not awaited: the probes, the webhook and running work go on while Slack's API is
        # still unreachable. The collector's pauses fall where no request waits (pacing.py).
        background = [asyncio.create_task(learn_identity(), name="opsbot auth.test"),
                      asyncio.create_task(collect_while_quiet(services.foreground),
                                          name="opsbot collector")]
        if socket is not None:
            background.append(asyncio.create_task(socket.dial(auth_retry),
                                                  name="opsbot socket mode"))
        try:
            yield
        finally:
            # No new work: /readyz fails, Socket Mode disconnects (uvicorn has closed the
            # listener already); running executions get the grace period, then are
            # interrupted (their target locks released); then the Lease is released.
            stopping.set()
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if socket is not None:
                await socket.close_async()  # type: ignore[no-untyped-call]
            await asyncio.gather(tasks.drain(grace), services.alerts.stop(grace))
            await services.stop_serving()
            await sender.stop()  # what is not delivered by then waits in the store

    intake = alertmanager_route(services.settings, services.store, services.alerts.wake,
                                services.foreground)
    hot: dict[str, Endpoint] = {intake.path: intake.endpoint}
    all_routes: list[BaseRoute] = [
        intake,
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    if app_token is None:
        all_routes.append(Route("/slack/events", events, methods=["POST"]))
        hot["/slack/events"] = events
    all_routes += routes
    return OpsbotApp(hot=hot, routes=all_routes, lifespan=lifespan)


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
        # What start-up built (modules, settings, the catalog) lives as long as the process:
        # out of the collector's reach, a full collection no longer walks it all (about
        # 0.1 s with every request waiting, a few times a minute while work runs).
        gc.freeze()
        # Requests allocate and free objects by the thousand; at Python's default threshold
        # the collector ran ~200 times a second under a burst of notifications, and the full
        # collections it led to (5-17 ms, every request waiting) were the intake's p99. Once
        # every YOUNG_OBJECTS net new objects instead: a pause of a few milliseconds, rarely.
        gc.set_threshold(YOUNG_OBJECTS, *gc.get_threshold()[1:])
        gc.enable()  # off while starting (bot/cli.py)
        # Requests in flight (acks, the intake's store write) are short; the grace for
        # running executions is the lifespan's (create_app), so the two do not add up.
        # log_config=None: uvicorn's records go through the root handler, so they follow
        # --log-format (json) and its secret masking like every other line.
        # access_log=False: the app logs each request's line itself, once it is answered.
        config = uvicorn.Config(app, host=host, port=port, lifespan="on", log_config=None,
                                access_log=False, timeout_graceful_shutdown=HTTP_DRAIN_SECONDS)
        uvicorn.Server(config).run()
    finally:
        services.close()
