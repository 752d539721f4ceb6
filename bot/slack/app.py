"""From Slack to the dispatcher: slash commands and button clicks become Triggers, recorded
and acked within Slack's 3 seconds, and run in the background; and the Bolt app, built on
demand, for the rest (bot/slack/bolt_app.py). It knows nothing of the web server (see
server.py) or of Kubernetes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from slack_sdk.web.async_client import AsyncWebClient

from bot import messages
from bot.config import Settings
from bot.dispatcher import Outcome
from bot.lazy import import_module
from bot.metrics import TRIGGERS
from bot.reporting import Notice, Reporter
from bot.services import Services, default_database_url
from bot.slack import queue
from bot.slack.alert_board import SlackAlertBoard, channel_reporter
from bot.slack.api import slack_client, slack_members
from bot.slack.blocks import ACTION_PREFIX
from bot.slack.board import SlackBoard
from bot.slack.identity import SlackIdentity
from bot.slack.reporter import SlackReporter
from bot.slack.tasks import BackgroundTasks
from bot.store import Store
from bot.trigger import Trigger

if TYPE_CHECKING:
    from slack_bolt.async_app import AsyncApp
    from starlette.responses import Response

__all__ = ["DirectIntake", "OnDemandBolt", "build_services", "button_trigger",
           "command_trigger", "direct_intake", "run_trigger", "taker", "unescape",
           "work_starter"]

log = logging.getLogger("opsbot.slack")


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


class OnDemandBolt:
    """The Bolt app (bot/slack/bolt_app.py), built when first needed: at the first request
    that `direct_intake` leaves to it (an approval, a checklist, a form), or at start-up in
    Socket Mode. Over HTTP a replica may never need it, and Bolt's ~200 modules stay off the
    path to `/readyz`. They are imported in a worker thread (`bot.lazy.import_module`), so
    requests arriving meanwhile are answered; every request that needs Bolt before it is
    built waits for the one build."""

    def __init__(self, services: Services, *, client: AsyncWebClient, tasks: BackgroundTasks,
                 identity: SlackIdentity) -> None:
        self._services = services
        self._client = client
        self._tasks = tasks
        self._identity = identity
        self._app: AsyncApp | None = None
        self._building: asyncio.Future[AsyncApp] | None = None

    async def app(self) -> AsyncApp:
        if self._app is not None:
            return self._app
        if self._building is None:
            self._building = asyncio.ensure_future(self._build())
        building = self._building
        try:
            # Shielded: a request given up meanwhile does not cancel the build for the others.
            self._app = await asyncio.shield(building)
        except Exception:
            if self._building is building:
                self._building = None  # the next request tries again
            raise
        return self._app

    async def _build(self) -> AsyncApp:
        await import_module("bot.slack.bolt_app")
        from bot.slack.bolt_app import build_bolt_app

        return build_bolt_app(self._services, client=self._client, tasks=self._tasks,
                              identity=self._identity)

    async def respond(self, body: dict[str, Any]) -> Response:
        """Bolt's answer to a checked HTTP request."""
        app = await self.app()
        from bot.slack.bolt_app import respond

        return await respond(app, body)
