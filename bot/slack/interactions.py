"""Approve and Deny under an approval request: a click, or the deny form, becomes one
`approve <id>` or `deny <id> <reason>` Trigger, run as the person in Slack's signed payload.

The request id comes from the button (or the form's metadata) and must look like one; the
reason is free text, quoted so that it stays one argument and cannot become a command.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shlex
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot import messages
from bot.markup import plain
from bot.services import Services
from bot.slack import queue
from bot.slack.api import SlackCallFailed, call
from bot.slack.blocks import (
    APPROVE_ACTION,
    APPROVE_CHECKLIST_ACTION,
    APPROVE_MODAL,
    CHECKLIST_ACTION,
    CHECKLIST_BLOCK,
    DENY_ACTION,
    DENY_MODAL,
    DENY_REASON_ACTION,
    DENY_REASON_BLOCK,
    REASON_LIMIT,
    approve_modal,
    deny_modal,
    message_text,
)
from bot.slack.outbox import ephemeral, send
from bot.slack.tasks import BackgroundTasks
from bot.storable import unstorable
from bot.store import ApprovalRequest, Store, StoreError
from bot.trigger import Trigger

__all__ = ["approve_trigger", "checklist_trigger", "deny_trigger", "register_approvals"]

log = logging.getLogger("opsbot.slack")

REQUEST_ID = re.compile(r"rq-[0-9A-Za-z]{4,40}")
CHANNEL_ID = re.compile(r"[A-Z0-9]{2,40}")  # C..., G..., D...: nothing a command could hide in

FORM_LOOKUP_SECONDS = 1.5


def _channel_of(body: dict[str, Any]) -> str | None:
    container = body.get("container") or {}
    channel = (body.get("channel") or {}).get("id") or container.get("channel_id")
    return str(channel) if channel and CHANNEL_ID.fullmatch(str(channel)) else None


def approve_trigger(body: dict[str, Any], action: dict[str, Any]) -> Trigger | None:
    """`approve <id>` as the clicker; None when the button's value is not a request id."""
    request_id = str(action.get("value") or "")
    if not REQUEST_ID.fullmatch(request_id):
        log.warning("approve click with a malformed request id ignored")
        return None
    return Trigger(
        source="slack",
        actor=body["user"]["id"],  # from the signed payload, never from the message text
        text=f"approve {request_id}",
        channel=_channel_of(body),
        delivery_id="slack:" + str(body.get("trigger_id") or action.get("action_ts")),
        via="button",
    )


def _metadata(view: dict[str, Any]) -> tuple[str, str | None] | None:
    request_id, _, channel = str(view.get("private_metadata") or "").partition("|")
    if not REQUEST_ID.fullmatch(request_id):
        return None
    return request_id, channel if CHANNEL_ID.fullmatch(channel) else None


def _field(view: dict[str, Any], block_id: str, action_id: str) -> dict[str, Any]:
    """What a submitted form holds for one of its inputs (empty when it holds nothing)."""
    values = (view.get("state") or {}).get("values") or {}
    field = (values.get(block_id) or {}).get(action_id) or {}
    return field if isinstance(field, dict) else {}


def _form_trigger(body: dict[str, Any], view: dict[str, Any], channel: str | None,
                  text: str) -> Trigger:
    """The decision a submitted form asks for, as its submitter (from the signed payload)."""
    return Trigger(
        source="slack",
        actor=body["user"]["id"],
        text=text,
        channel=channel,
        delivery_id="slack:" + str(body.get("trigger_id") or view.get("id")),
        via="button",
    )


def deny_reason(view: dict[str, Any]) -> str:
    field = _field(view, DENY_REASON_BLOCK, DENY_REASON_ACTION)
    return str(field.get("value") or "").strip()[:REASON_LIMIT]


def deny_trigger(body: dict[str, Any]) -> Trigger | None:
    """`deny <id> <reason>` from a submitted deny form, as the submitter; None when the form's
    metadata is not ours or the reason is empty."""
    view = body.get("view") or {}
    meta = _metadata(view)
    reason = deny_reason(view)
    if meta is None or not reason:
        return None
    request_id, channel = meta
    # One quoted word: `'x; approve rq-...'` or `--env prod` stay the reason's text.
    return _form_trigger(body, view, channel, f"deny {request_id} {shlex.quote(reason)}")


def ticked(view: dict[str, Any]) -> tuple[int, ...]:
    """The checklist items (numbers) ticked in a submitted approve form."""
    field = _field(view, CHECKLIST_BLOCK, CHECKLIST_ACTION)
    numbers = {str(o.get("value")) for o in field.get("selected_options") or ()
               if isinstance(o, dict)}
    return tuple(sorted(int(n) for n in numbers if n.isascii() and n.isdigit() and len(n) <= 2))


def checklist_trigger(body: dict[str, Any]) -> Trigger | None:
    """`approve <id> --confirm 1,2,...` from a submitted approve form, as the submitter; the
    dispatcher decides whether what was ticked is the whole checklist."""
    view = body.get("view") or {}
    meta = _metadata(view)
    numbers = ticked(view)
    if meta is None or not numbers:
        return None
    request_id, channel = meta
    return _form_trigger(body, view, channel,
                         f"approve {request_id} --confirm {','.join(str(n) for n in numbers)}")


async def _ephemeral(store: Store, channel: str, user: str, text: str) -> None:
    await send(store, ephemeral(channel=channel, user=user, text=text))


def register_approvals(app: AsyncApp, services: Services, web: AsyncWebClient,
                       take: queue.Take, background: BackgroundTasks) -> None:
    """Listeners for Approve, Deny and the deny form; `take` records a decision before the
    ack and dispatches it in the background. Bolt answers Slack when a listener returns, so
    what may wait on Slack (the deny form) runs in `background`."""

    @app.action(APPROVE_ACTION)
    async def on_approve(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        trigger = approve_trigger(body, action)
        if trigger is not None:
            await take(trigger)
        await ack()

    @app.action(APPROVE_CHECKLIST_ACTION)
    async def on_approve_checklist(ack: AsyncAck, body: dict[str, Any],
                                   action: dict[str, Any]) -> None:
        await ack()
        background.spawn(open_approve_form(body, action), name="opsbot approve form")

    async def form_request(body: dict[str, Any], action: dict[str, Any], form: str
                           ) -> tuple[str, str | None, str, ApprovalRequest | None] | None:
        """The clicked request's id, channel, clicker, and the request itself: looked up
        within FORM_LOOKUP_SECONDS, since trigger_id is good for 3 seconds (None when the
        store did not answer in time). None for a button whose value is not a request id."""
        request_id = str(action.get("value") or "")
        if not REQUEST_ID.fullmatch(request_id):
            log.warning("%s click with a malformed request id ignored", form)
            return None
        try:
            request = await asyncio.wait_for(
                asyncio.to_thread(services.store.get_request, request_id), FORM_LOOKUP_SECONDS)
        except (StoreError, TimeoutError) as exc:
            log.warning("%s form for %s: the store failed (%s)", form, request_id,
                        type(exc).__name__)
            request = None
        return request_id, _channel_of(body), str(body["user"]["id"]), request

    async def open_form(form: str, body: dict[str, Any], view: dict[str, Any], request_id: str,
                        channel: str | None, user: str, failed: str) -> None:
        """Open the modal now (not through the outbox, which would be too late for
        trigger_id's 3 seconds); if Slack refuses, tell the clicker `failed`."""
        try:
            await call("views.open", web.views_open, trigger_id=body["trigger_id"], view=view)
        except SlackCallFailed as exc:
            log.warning("%s form for %s not opened: %s", form, request_id, exc)
            if channel:
                await _ephemeral(services.store, channel, user, message_text(failed))

    async def open_approve_form(body: dict[str, Any], action: dict[str, Any]) -> None:
        found = await form_request(body, action, "approve")
        if found is None:
            return
        request_id, channel, user, request = found
        # Unlike the deny form, this one cannot open without the request: its items are the
        # checklist to confirm.
        if request is None or not request.pending or not request.checklist:
            if channel:
                text = (messages.approval_not_open(request_id, request.status)
                        if request is not None and not request.pending
                        else messages.approve_form_failed(request_id))
                await _ephemeral(services.store, channel, user, message_text(text))
            return
        await open_form("approve", body, approve_modal(
            request_id, channel, request.command, request.environment, request.checklist),
            request_id, channel, user, messages.approve_form_failed(request_id))

    @app.view(APPROVE_MODAL)
    async def on_approve_submitted(ack: AsyncAck, body: dict[str, Any]) -> None:
        view = body.get("view") or {}
        # The form's own items (Slack sends the view back) keep it open until all are
        # ticked; the dispatcher checks again against the stored request.
        blocks: list[Any] = view["blocks"] if isinstance(view.get("blocks"), list) else []
        options = [o for b in blocks if isinstance(b, dict) and b.get("block_id") == CHECKLIST_BLOCK
                   for o in ((b.get("element") or {}).get("options") or [])]
        confirmed = ticked(view)
        if not confirmed or len(confirmed) < len(options):
            await ack(response_action="errors",
                      errors={CHECKLIST_BLOCK: plain(messages.checklist_modal_missing())})
            return
        trigger = checklist_trigger(body)
        if trigger is None:
            log.warning("approve form with unknown metadata ignored")
        else:
            await take(trigger)
        await ack()

    @app.action(DENY_ACTION)
    async def on_deny(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        background.spawn(open_deny_form(body, action), name="opsbot deny form")

    async def open_deny_form(body: dict[str, Any], action: dict[str, Any]) -> None:
        found = await form_request(body, action, "deny")
        if found is None:
            return
        request_id, channel, user, request = found
        # Without the request's state the form opens all the same, and the denial is decided
        # (and recorded) on submission.
        if request is not None and not request.pending and channel:
            # Decided meanwhile: say so instead of asking for a reason that cannot count.
            await _ephemeral(services.store, channel, user,
                             message_text(
                                 messages.approval_not_open(request_id, request.status)))
            return
        command = request.command if request is not None else request_id
        await open_form("deny", body, deny_modal(request_id, channel, command), request_id,
                        channel, user, messages.deny_form_failed(request_id))

    @app.view(DENY_MODAL)
    async def on_deny_submitted(ack: AsyncAck, body: dict[str, Any]) -> None:
        view = body.get("view") or {}
        reason = deny_reason(view)
        refused = unstorable(reason)
        if not reason or refused is not None:  # the form stays open, saying what to change
            error = (messages.unstorable_input(refused) if refused
                     else messages.deny_reason_required())
            await ack(response_action="errors", errors={DENY_REASON_BLOCK: plain(error)})
            return
        trigger = deny_trigger(body)
        if trigger is None:
            log.warning("deny form with unknown metadata ignored")
        else:
            await take(trigger)
        await ack()  # closes the form
