"""The Bolt app: turns slash commands and button clicks into Triggers for the dispatcher.

It acks first, within Slack's 3 seconds, and runs the work in the background; it knows nothing
of the web server (see server.py) or of Kubernetes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt import BoltResponse
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_bolt.error import BoltUnhandledRequestError
from slack_bolt.logger.messages import (
    warning_client_prioritized_and_token_skipped,
    warning_token_skipped,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot import messages
from bot.config import Settings
from bot.dispatcher import Outcome
from bot.metrics import TRIGGERS
from bot.reporting import Notice, Reporter
from bot.services import Services, default_database_url
from bot.slack import queue
from bot.slack.alert_board import SlackAlertBoard, channel_reporter
from bot.slack.api import slack_client, slack_members
from bot.slack.blocks import ACTION_PREFIX
from bot.slack.board import SlackBoard
from bot.slack.checklist import register_checklist
from bot.slack.identity import SlackIdentity
from bot.slack.inbound import Rejected, kind_of, refused
from bot.slack.interactions import register_approvals
from bot.slack.reporter import SlackReporter
from bot.slack.tasks import BackgroundTasks
from bot.store import Store
from bot.trigger import Trigger

__all__ = ["BOLT_LOG", "DirectIntake", "build_bolt_app", "build_services",
           "button_trigger", "command_trigger", "direct_intake", "run_trigger", "taker",
           "unescape", "work_starter"]

log = logging.getLogger("opsbot.slack")


# Bolt and the Socket Mode client log through this logger (Bolt copies its filters to every
# logger it makes), so what they would write about a request is stopped here, whatever the level.
BOLT_LOG = logging.getLogger("opsbot.slack.bolt")

# Messages of Bolt and slack_sdk that carry a request's body (or echo part of it).
_CARRY_BODIES = (
    "Invalid request signature detected",  # Bolt's verification (we verify before Bolt)
    "Unhandled request (",  # Bolt's hint for an unhandled request
    "A global middleware (",
    "Received message (",  # Socket Mode, at DEBUG: every envelope as received
    "Unsuccessful Bolt execution result",
    "Responding with",  # the response, which may echo the request (a challenge)
)
# Bolt reads SLACK_BOT_TOKEN on its own and warns that our client's token and authorize win
# over it; both come from the same setting, so the warnings would only alarm operators.
_TOKEN_WARNINGS = (warning_client_prioritized_and_token_skipped(), warning_token_skipped())


class _NoRequestBodies(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not message.startswith(_CARRY_BODIES) and message not in _TOKEN_WARNINGS


if not BOLT_LOG.filters:
    BOLT_LOG.addFilter(_NoRequestBodies())


def build_services(settings: Settings) -> Services:
    """The product's services, with user group members read from Slack and approval
    requests shown (and decided) in Slack."""
    client = slack_client(settings)
    store = Store.open(settings.database_url or default_database_url())
    try:
        return Services.build(settings, members=slack_members(client, settings), store=store,
                              board=SlackBoard(store, settings.break_glass_channel),
                              alert_board=SlackAlertBoard(store, settings.alerts.channel),
                              report_to=lambda channel: channel_reporter(store, channel))
    except BaseException:
        store.close()  # a bad runbook stops startup; leave no connection behind
        raise


def unescape(text: str) -> str:
    """Slack sends `&`, `<` and `>` escaped; the command language wants what was typed."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def command_trigger(body: dict[str, Any]) -> Trigger:
    """A slash command, as Slack signed it."""
    return Trigger(
        source="slack",
        actor=body["user_id"],
        text=unescape(body.get("text") or ""),
        channel=body["channel_id"],
        delivery_id="slack:" + body["trigger_id"],
        via="command",
    )


def button_trigger(body: dict[str, Any], action: dict[str, Any]) -> tuple[Trigger, str | None]:
    """A follow-up button click, run as the user who clicked; and the thread to answer in."""
    container = body.get("container") or {}
    message = body.get("message") or {}
    channel = (body.get("channel") or {}).get("id") or container.get("channel_id")
    clicked_ts = container.get("message_ts") or message.get("ts")
    if body.get("trigger_id"):
        delivery = "slack:" + body["trigger_id"]
    else:
        delivery = f"slack:{clicked_ts}:{action.get('action_ts')}"
    # Ephemeral messages cannot hold a thread; a reply in a thread stays in that thread.
    thread_ts = None if container.get("is_ephemeral") else message.get("thread_ts") or clicked_ts
    trigger = Trigger(
        source="slack",
        actor=body["user"]["id"],  # from the signed payload, never from the message text
        text=str(action.get("value") or ""),
        channel=channel,
        delivery_id=delivery,
        via="button",
    )
    return trigger, thread_ts


async def run_trigger(services: Services, trigger: Trigger, reporter: Reporter) -> Outcome | None:
    """Dispatch, count the outcome, and tell the asker if something broke inside."""
    try:
        outcome = await services.dispatcher.dispatch(trigger, reporter)
    except Exception:
        TRIGGERS.labels(source=trigger.source, outcome="error").inc()
        log.exception("dispatching %s from %s failed", trigger.delivery_id, trigger.actor)
        try:
            await reporter.notice(Notice("error", messages.trigger_failed()))
        except Exception:
            log.exception("could not tell %s about the failure", trigger.actor)
        return None
    return outcome


def work_starter(services: Services, web: AsyncWebClient, background: BackgroundTasks,
                 ) -> queue.Start:
    """Run a trigger in `background`, answering in its channel (and thread)."""
    def start(trigger: Trigger, thread_ts: str | None = None) -> None:
        if trigger.channel is None:
            log.warning("%s from %s has no channel; ignored", trigger.via, trigger.actor)
            return
        # Once no request waits for its ack (bot/pacing.py): acks stay at the floor.
        background.spawn_when_quiet(services.foreground, _run_started, services, web, trigger,
                                    trigger.channel, thread_ts,
                                    name=f"opsbot {trigger.delivery_id}",
                                    key=trigger.delivery_id)

    return start


async def _run_started(services: Services, web: AsyncWebClient, trigger: Trigger, channel: str,
                       thread_ts: str | None) -> Outcome | None:
    reporter = SlackReporter(services.store, channel, trigger.actor,
                             thread_ts=thread_ts, direct=web)
    return await run_trigger(services, trigger, reporter)


def taker(services: Services, start: queue.Start) -> queue.Take:
    """Record a trigger, to be acked by the caller, then run it (bot/slack/queue.py)."""
    async def take(trigger: Trigger, thread_ts: str | None = None) -> None:
        if trigger.channel is None:
            log.warning("%s from %s has no channel; ignored", trigger.via, trigger.actor)
            return
        await queue.accept(services, trigger, thread_ts, start)

    return take


DirectIntake = Callable[[str, dict[str, Any]], Awaitable[bool]]


def direct_intake(command: str, take: queue.Take) -> DirectIntake:
    """What most requests are (`command` typed, a follow-up button clicked), taken without
    Bolt's dispatch: recorded, then True, and the caller acks with an empty 200, as Bolt's
    listener would. False for anything else (approvals, checklists, another command), which
    Bolt dispatches. The body is one `inbound.check` passed as `kind`."""
    async def intake(kind: str, body: dict[str, Any]) -> bool:
        if kind == "command":
            if body["command"] != command:
                return False
            await take(command_trigger(body))
            return True
        if kind == "block_actions":
            # Bolt's action listeners match the first action, as here.
            action = body["actions"][0]
            if not str(action.get("action_id", "")).startswith(ACTION_PREFIX):
                return False
            await take(*button_trigger(body, action))
            return True
        return False

    return intake


def build_bolt_app(
    services: Services,
    *,
    client: AsyncWebClient | None = None,
    tasks: BackgroundTasks | None = None,
    identity: SlackIdentity | None = None,
) -> AsyncApp:
    """Bolt app for `settings.slack.command`, follow-up buttons and approval buttons; work
    runs in `tasks`.

    Requests reach it checked (bot/slack/inbound.py): over HTTP the server verifies the
    signature and the shape first, over Socket Mode the socket handler checks the shape. Who
    the bot is comes from `identity`, learned once at startup, never per request."""
    settings = services.settings
    web = client or slack_client(settings)
    background = tasks if tasks is not None else BackgroundTasks()
    app = AsyncApp(
        client=web,
        logger=BOLT_LOG,
        authorize=identity or SlackIdentity(web),
        process_before_response=True,
        # The server verified the signature before Bolt saw the request (and Socket Mode
        # requests carry none); Bolt's own check would log the body of a failing one.
        request_verification_enabled=False,
        # A request no listener takes goes to on_error below, not to Bolt's warning with its body.
        raise_error_for_unhandled_request=True,
    )

    @app.error
    async def on_error(error: Exception, body: dict[str, Any]) -> BoltResponse | None:
        kind = kind_of(body) or "request"
        if isinstance(error, BoltUnhandledRequestError):
            unhandled = Rejected(404, f"no listener handles this {kind}")
            refused(unhandled, "request")
            return BoltResponse(status=404, body={"error": unhandled.reason})
        log.error("handling a Slack %s failed", kind, exc_info=error)
        return None

    start = work_starter(services, web, background)
    take = taker(services, start)
    direct = direct_intake(settings.slack.command, take)

    # Bolt answers Slack when a listener returns (process_before_response): each records
    # what arrived, acks, and leaves the work to the background, so the ack waits on one
    # short store write and on no polling. Over HTTP the server takes these two kinds
    # itself (`direct_intake`); Socket Mode envelopes come this way.
    @app.command(settings.slack.command)
    async def on_command(ack: AsyncAck, body: dict[str, Any]) -> None:
        await direct("command", body)
        await ack()

    @app.action(re.compile(re.escape(ACTION_PREFIX) + ".*"))
    async def on_button(ack: AsyncAck, body: dict[str, Any]) -> None:
        await direct("block_actions", body)
        await ack()

    # Approve / Deny under approval requests; refusals reach only the clicker (ephemeral).
    register_approvals(app, services, web, take, background)
    register_checklist(app, services, web)
    return app
