"""What opsbot is measured against, each served by uvicorn with the same settings `opsbot serve`
uses: a bare slack-bolt AsyncApp acking `/ops` inline (process_before_response=True) or in
Bolt's default mode, and a bare Starlette endpoint that only parses an Alertmanager JSON body.

Run: `python -m bench.baselines bolt-inline|bolt-default|starlette PORT`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.signing import SIGNING_SECRET


def bolt_app(inline: bool) -> Starlette:
    from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
    from slack_bolt.async_app import AsyncApp
    from slack_bolt.authorization import AuthorizeResult

    async def authorize(**_: Any) -> AuthorizeResult:
        # A known installation, so Bolt asks Slack nothing (as opsbot's SlackIdentity, once
        # it has learnt who it is).
        return AuthorizeResult(enterprise_id=None, team_id="T0STANDIN", bot_user_id="U0BENCH",
                               bot_id="B0BENCH", bot_token="xoxb-bench-unused")

    # Bolt checks the signature itself, as a bare app does; opsbot checks it before Bolt.
    app = AsyncApp(signing_secret=SIGNING_SECRET, authorize=authorize,
                   process_before_response=inline)

    @app.command("/ops")
    async def ops(ack: Any) -> None:
        await ack()

    handler = AsyncSlackRequestHandler(app)

    async def events(request: Request) -> Response:
        return await handler.handle(request)

    return Starlette(routes=[Route("/slack/events", events, methods=["POST"])])


def starlette_app() -> Starlette:
    async def alertmanager(request: Request) -> Response:
        payload = json.loads(await request.body())
        return JSONResponse({"status": "ok", "alerts": len(payload.get("alerts", []))})

    async def healthz(_: Request) -> Response:
        return Response("ok")

    return Starlette(routes=[Route("/alertmanager", alertmanager, methods=["POST"]),
                             Route("/healthz", healthz, methods=["GET"])])


def main(argv: list[str]) -> int:
    kind, port = argv[0], int(argv[1])
    app = starlette_app() if kind == "starlette" else bolt_app(kind == "bolt-inline")
    if kind != "starlette":
        async def healthz(_: Request) -> Response:
            return Response("ok")
        app.router.routes.append(Route("/healthz", healthz, methods=["GET"]))
    # As bot/slack/server.py serves opsbot: uvicorn's defaults, an access line per request
    # (uvicorn's own, before the answer; opsbot writes the same line after it).
    uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on")).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
