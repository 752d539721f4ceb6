"""The server around the Bolt app: probes, metrics, restart recovery, a channel the bot is not
in, and `serve` refusing to start without its secrets."""

from __future__ import annotations

import asyncio
import logging

import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from bot.config import Settings
from bot.errors import ConfigError
from bot.services import Services
from bot.slack.api import slack_client
from bot.slack.app import OnDemandBolt
from bot.slack.identity import SlackIdentity
from bot.slack.server import OpsbotApp, create_app, serve
from bot.slack.tasks import BackgroundTasks
from tests.support.slack_standin import CHANNEL, ServerThread, SlackDriver, SlackStandIn


def test_probes_and_metrics(bot: SlackDriver, services: Services) -> None:
    assert bot.http.get(f"{bot.url}/healthz").text == "ok"
    ready = bot.http.get(f"{bot.url}/readyz")
    assert ready.status_code == 200
    # Alone on SQLite, the process leads without a Lease.
    assert ready.json() == {"ready": True, "replica": services.store.replica,
                            "leader": {"leader": True, "identity": services.store.replica,
                                       "election": "none"}}

    bot.send_command("alice", "status shop-api")
    bot.finished("status shop-api")
    metrics = bot.http.get(f"{bot.url}/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'opsbot_triggers_total{outcome="succeeded",source="slack"}' in metrics.text
    assert 'opsbot_executions_total{runbook="status",status="succeeded"}' in metrics.text
    assert "opsbot_slack_api_errors_total" in metrics.text
    assert "\nopsbot_leader 1.0\n" in metrics.text


def test_the_endpoints_served_directly_answer_other_methods_and_paths_as_routes_do(
        bot: SlackDriver, services: Services) -> None:
    # POSTs to /slack/events and /alertmanager skip Starlette (OpsbotApp); anything else
    # still gets Starlette's answers.
    http, url = bot.http, bot.url
    assert http.get(f"{url}/slack/events").status_code == 405
    assert http.get(f"{url}/alertmanager").status_code == 405
    assert http.post(f"{url}/slack/events/more", content=b"x").status_code == 404
    assert http.post(f"{url}/slack/events?x=1", content=b"x").status_code == 401
    assert http.post(f"{url}/alertmanager", content=b"{}").status_code == 401
    bot.send_command("alice", "status shop-api")
    bot.finished("status shop-api")


def test_each_request_is_logged_once_answered_in_uvicorns_form(
        caplog: pytest.LogCaptureFixture) -> None:
    """`OpsbotApp` logs every HTTP request's access line (`opsbot.access`) after the answer is
    sent, whichever way it was served: directly, through Starlette's routes, or failing."""
    seen: list[str] = []

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append("logged " + record.getMessage())

    async def hot(_: Request) -> Response:
        return Response(status_code=202)

    async def page(_: Request) -> Response:
        return PlainTextResponse("ok")

    async def broken(_: Request) -> Response:
        raise RuntimeError("a failing endpoint")

    app = OpsbotApp(hot={"/hot": hot}, routes=[Route("/page", page),
                                                Route("/broken", broken)])

    async def call(method: str, path: str, query: bytes = b"") -> None:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
                 "query_string": query, "root_path": "", "headers": [],
                 "client": ("127.0.0.1", 50312), "server": ("127.0.0.1", 8080)}

        async def receive() -> dict[str, object]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, object]) -> None:
            if message["type"] == "http.response.start":
                seen.append(f"sent {message['status']}")

        await app(scope, receive, send)

    handler = Seen()
    access = logging.getLogger("opsbot.access")
    access.addHandler(handler)
    caplog.set_level(logging.INFO, "opsbot.access")
    try:
        asyncio.run(call("POST", "/hot"))
        asyncio.run(call("GET", "/page", b"a=1&b=%22"))
        asyncio.run(call("GET", '/"quoted"'))
        with pytest.raises(RuntimeError):
            asyncio.run(call("GET", "/broken"))
    finally:
        access.removeHandler(handler)
    assert seen == [
        "sent 202", 'logged 127.0.0.1:50312 - "POST /hot HTTP/1.1" 202',
        "sent 200", 'logged 127.0.0.1:50312 - "GET /page?a=1&b=%22 HTTP/1.1" 200',
        "sent 404", 'logged 127.0.0.1:50312 - "GET /%22quoted%22 HTTP/1.1" 404',
        "sent 500", 'logged 127.0.0.1:50312 - "GET /broken HTTP/1.1" 500',
    ]


def test_readyz_fails_when_the_store_does_not_answer(bot: SlackDriver,
                                                     services: Services) -> None:
    services.store.close()
    database = services.settings.database_url
    assert database and database.startswith("sqlite:///")
    from pathlib import Path

    Path(database.removeprefix("sqlite:///")).unlink()  # a new empty file has no tables
    ready = bot.http.get(f"{bot.url}/readyz")
    assert ready.status_code == 503
    assert bot.http.get(f"{bot.url}/healthz").status_code == 200


def test_restart_marks_running_executions_interrupted(services: Services,
                                                      slack: SlackStandIn) -> None:
    store = services.store
    ex_id = store.create_execution(
        runbook="scale", source="slack", actor="U0ALICE", command="scale shop-api 4",
        environment="staging", target="shop-api", params={}, dry_run=False, channel=CHANNEL)
    store.start_step(ex_id, index=0, name="Scale", handler="k8s.scale")
    posted = slack.add_message(CHANNEL, "⏳ running")  # what the previous process posted
    store.set_execution_message(ex_id, channel=CHANNEL, ts=posted.ts)

    server = ServerThread(create_app(services)).start()
    try:
        update = slack.wait_for(lambda c: c.method == "chat.update")
        assert update.params["ts"] == posted.ts
        assert update.text.startswith("⚠️ `scale shop-api 4` in *staging*: interrupted")
        assert "was not resumed or repeated" in update.text
        assert "Scale" in str(update.params["blocks"])
        record = store.get_execution(ex_id)
        assert record is not None and record.status == "interrupted"
    finally:
        server.stop()


def test_not_in_channel_answers_privately_and_still_runs(bot: SlackDriver,
                                                         services: Services) -> None:
    bot.slack.unpostable["C0PRIVATE"] = "not_in_channel"
    bot.send_command("alice", "status shop-api", channel="C0PRIVATE")
    assert "/invite" in bot.ephemeral("alice", lambda t: "/invite" in t)
    result = bot.ephemeral("alice", lambda t: "status shop-api` in *staging*: done" in t)
    assert "only to you" in result
    record = services.store.recent_executions(1)[0]
    assert (record.status, record.channel, record.ts) == ("succeeded", "C0PRIVATE", None)


def test_serve_refuses_to_start_without_slack_secrets(settings: Settings) -> None:
    bare = settings.model_copy(update={"slack": settings.slack.model_copy(
        update={"bot_token": None, "signing_secret": None})})
    with pytest.raises(ConfigError) as caught:
        serve(bare)
    assert "SLACK_BOT_TOKEN" in str(caught.value)
    assert "SLACK_SIGNING_SECRET" in str(caught.value)


def test_web_api_calls_reuse_kept_connections(bot: SlackDriver, slack: SlackStandIn) -> None:
    # Each call on a connection of its own would cost a TLS handshake with slack.com.
    bot.send_command("alice", "status shop-api")
    bot.finished("status shop-api")
    before = len(slack.calls)
    earlier = {call.peer for call in slack.calls}
    bot.send_command("alice", "status shop-web")
    bot.finished("status shop-web")
    later = slack.calls[before:]
    assert len(later) >= 2  # the message, then its updates
    assert all(call.peer is not None for call in later)
    assert {call.peer for call in later} <= earlier


async def test_bolt_is_built_once_for_the_requests_that_wait_for_it(services: Services) -> None:
    client = slack_client(services.settings)
    bolt = OnDemandBolt(services, client=client, tasks=BackgroundTasks(),
                        identity=SlackIdentity(client))
    first, second = await asyncio.gather(bolt.app(), bolt.app())
    assert first is second  # one build, shared by both
    assert await bolt.app() is first
