"""Block Kit rendering of the neutral views, so Slack shows what the console prints as text.

Every text goes through `bot/slack/mrkdwn.py`: our markup formats, values show as typed. Every
message fits Slack's limits (`bot/slack/limits.py`): a long text spreads over several blocks
while the message has room; what does not fit is cut with `…` and a line saying so, never
dropped silently; a step's long output goes to the thread (`bot/slack/output.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from bot import messages
from bot.alerts.view import AlertGroupView, group_text
from bot.approvals.view import ApprovalView
from bot.markup import bold, clip, plain, units
from bot.reporting import Button, ExecutionView, Notice, StepView
from bot.slack import limits
from bot.slack.mrkdwn import chunks, fit

__all__ = [
    "ACTION_PREFIX",
    "APPROVE_ACTION",
    "APPROVE_CHECKLIST_ACTION",
    "APPROVE_MODAL",
    "CHECKLIST_ACTION",
    "CHECKLIST_BLOCK",
    "DENY_ACTION",
    "DENY_MODAL",
    "DENY_REASON_ACTION",
    "DENY_REASON_BLOCK",
    "POST_CHECKLIST_ACTION",
    "POST_CHECKLIST_BLOCK",
    "REASON_LIMIT",
    "Block",
    "alert_group_blocks",
    "alert_group_text",
    "approval_blocks",
    "approval_text",
    "approve_modal",
    "deny_modal",
    "execution_blocks",
    "execution_text",
    "message_text",
    "notice_blocks",
    "notice_text",
    "post_checklist_blocks",
    "text_units",
]

log = logging.getLogger("opsbot.slack")

Block = dict[str, Any]

ACTION_PREFIX = "opsbot_run_"
APPROVE_ACTION = "opsbot_approve"
APPROVE_CHECKLIST_ACTION = "opsbot_approve_checklist"  # Approve on a request with a checklist
APPROVE_MODAL = "opsbot_approve_modal"
CHECKLIST_BLOCK = "opsbot_checklist"
CHECKLIST_ACTION = "items"
POST_CHECKLIST_ACTION = "opsbot_post_checklist"
POST_CHECKLIST_BLOCK = "opsbot_post_checklist|"  # + the execution id
DENY_ACTION = "opsbot_deny"
DENY_MODAL = "opsbot_deny_modal"
DENY_REASON_BLOCK = "opsbot_deny_reason"
DENY_REASON_ACTION = "reason"
REASON_LIMIT = 2000  # what a deny reason may hold; the command line must stay under 4000

# Our own shares of Slack's limits: a headline or a context line is never worth a whole
# message, and a summary keeps its place however many steps come before it.
HEADLINE = 1000
CONTEXT = 2000
SUMMARY_SHARE = 4000
FALLBACK = 3000  # the top-level `text`: notifications show its start only
ALERT_LINES = 15  # alerts (and automation lines) listed in a group message
ALERT_VALUE = 300  # an alert's name or summary in its line
COMMAND = 500  # a command in a headline: what follows it (where, how it went) must show
NAME = 100  # an environment or a person's name in a headline
_MIN_CUT = 40  # a cut text shorter than this says nothing: leave it out instead


def message_text(text: str, limit: int = FALLBACK) -> str:
    """A message's top-level `text` (marked text in, mrkdwn out), within `limit`."""
    return fit(text, limit)


def _mrkdwn(text: str, limit: int = limits.TEXT_OBJECT) -> dict[str, Any]:
    # verbatim: values are not auto-linked; our markup and entities still apply.
    return {"type": "mrkdwn", "text": fit(text, limit), "verbatim": True}


def _plain(text: str, limit: int) -> dict[str, Any]:
    """A plain_text object: shown literally, shortcodes included (emoji: false)."""
    return {"type": "plain_text", "text": clip(plain(text), limit), "emoji": False}


def _section(text: str, limit: int = limits.SECTION_TEXT) -> Block:
    return {"type": "section", "text": _mrkdwn(text, limit)}


def _context(text: str, limit: int = CONTEXT) -> Block:
    return {"type": "context", "elements": [_mrkdwn(text, limit)]}


def text_units(value: Any) -> int:
    """The text a block (or a list of them) holds, as Slack sums it for a message's budget."""
    if isinstance(value, list):
        return sum(text_units(item) for item in value)
    if not isinstance(value, dict):
        return 0
    if value.get("type") in ("mrkdwn", "plain_text"):
        return units(str(value.get("text", "")))
    return sum(text_units(item) for item in value.values())


@dataclass
class _Room:
    """What one message may still take: blocks and text units."""

    blocks: int
    units: int

    def fits(self, block: Block) -> bool:
        return self.blocks >= 1 and self.units >= text_units(block)

    def take(self, block: Block) -> Block:
        self.blocks -= 1
        self.units -= text_units(block)
        return block

    def reserve(self, blocks: Iterable[Block]) -> None:
        for block in blocks:
            self.take(block)


@dataclass(frozen=True)
class _Text:
    """Marked text to spread over sections."""

    text: str


_Part = Block | _Text


def _fill(room: _Room, parts: Sequence[_Part]) -> tuple[list[Block], bool]:
    """The parts as blocks, in order, while the room lasts; False when something was cut."""
    out: list[Block] = []
    for part in parts:
        if isinstance(part, dict):
            if not room.fits(part):
                return out, False
            out.append(room.take(part))
            continue
        for chunk in chunks(part.text, limits.SECTION_TEXT, upto=max(room.units, 0)):
            block = {"type": "section", "text": _mrkdwn_raw(chunk.text)}
            if room.fits(block):
                out.append(room.take(block))
                continue
            if room.blocks >= 1 and room.units >= _MIN_CUT:
                out.append(room.take({"type": "section",
                                      "text": _mrkdwn_raw(chunk.shortened(room.units))}))
            return out, False
    return out, True


def _mrkdwn_raw(rendered: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": rendered, "verbatim": True}


def _needs(parts: Sequence[_Part], upto: int) -> tuple[int, int]:
    """The blocks and text units the parts take when nothing is cut (counting to `upto`)."""
    blocks = units_ = 0
    for part in parts:
        if isinstance(part, dict):
            blocks, units_ = blocks + 1, units_ + text_units(part)
        else:
            pieces = chunks(part.text, limits.SECTION_TEXT, upto=upto)
            blocks, units_ = blocks + len(pieces), units_ + sum(units(p.text) for p in pieces)
    return blocks, units_


def _message(head: list[Block], body: list[_Part], tail: list[Block], note: str,
             *, first: Sequence[_Part] = (), held: int = 0) -> list[Block]:
    """head, first, body and tail within one message's limits. What does not fit is cut, and
    `note` (once) says so where the cut is. `first` is filled before `body` with room held
    back for up to `held` units of `body`: a summary keeps its place after many steps."""
    note_block = _context(note)
    room = _Room(limits.BLOCKS_PER_MESSAGE, limits.MESSAGE_TEXT_BUDGET)
    room.reserve([*head, *tail, note_block])
    kept_blocks, kept_units = _needs(body, held)
    kept = _Room(min(kept_blocks, room.blocks // 2), min(held, kept_units))
    room.blocks -= kept.blocks
    room.units -= kept.units
    before, first_whole = _fill(room, first)
    room.blocks += kept.blocks
    room.units += kept.units
    after, body_whole = _fill(room, body)
    cut_first = [note_block] if not first_whole else []
    cut_body = [note_block] if first_whole and not body_whole else []
    return [*head, *before, *cut_first, *after, *cut_body, *tail]


# Executions -------------------------------------------------------------------------------


def _field(name: str, value: str) -> str:
    return f"{bold(name)}\n{value}"


def _step_parts(step: StepView) -> list[_Part]:
    parts: list[_Part] = [_Text(messages.step_line(step))]
    short: list[dict[str, Any]] = []
    for name, value in step.fields:
        if not (name or value).strip():
            continue
        text = fit(_field(name, value), limits.FIELD_TEXT + 1) \
            if len(name) + len(value) < limits.FIELD_TEXT else ""
        if text and units(text) <= limits.FIELD_TEXT:
            short.append(_mrkdwn_raw(text))
        else:  # too long for a field: a section (or several) of its own
            parts.append(_Text(_field(name, value)))
    groups = [short[i:i + limits.FIELDS_PER_SECTION]
              for i in range(0, len(short), limits.FIELDS_PER_SECTION)]
    return parts[:1] + [{"type": "section", "fields": g} for g in groups] + parts[1:]


def _compact_steps(steps: list[StepView]) -> _Text:
    """All steps in as few sections as their text needs, for runbooks with many steps."""
    lines = []
    for step in steps:
        lines.append(messages.step_line(step))
        lines += [f"    {bold(k)}: {v}" for k, v in step.fields]
    return _Text("\n".join(lines))


def _button(index: int, button: Button) -> Block | None:
    if units(button.command) > limits.BUTTON_VALUE:
        # A shortened command would run something else; better no button than a wrong one.
        log.warning("follow-up `%s` is too long for a button; not offered", plain(button.label))
        return None
    element: Block = {
        "type": "button",
        "action_id": f"{ACTION_PREFIX}{index}",
        "text": _plain(button.label, limits.BUTTON_TEXT),
        "value": button.command,
    }
    if button.style:
        element["style"] = button.style
    return element


def _actions(buttons: list[Button]) -> list[Block]:
    elements = [e for i, b in enumerate(buttons) if (e := _button(i, b)) is not None]
    return [
        {"type": "actions", "block_id": f"opsbot_follow_up_{i}",
         "elements": elements[i:i + limits.BUTTONS_PER_ACTIONS]}
        for i in range(0, len(elements), limits.BUTTONS_PER_ACTIONS)
    ][:2]


def _brief(view: ExecutionView) -> ExecutionView:
    """The view with the values of its headline and context line cut to a sensible size."""
    return replace(view, command=clip(view.command, COMMAND),
                   environment=clip(view.environment, NAME), actor=clip(view.actor, NAME))


def execution_blocks(view: ExecutionView) -> list[Block]:
    """Headline, who and which execution, one line per step with its fields, summary, buttons."""
    head = [_section(messages.execution_headline(_brief(view)), HEADLINE),
            _context(messages.execution_context(_brief(view)))]
    steps: list[_Part] = [p for step in view.steps for p in _step_parts(step)]
    if len(steps) > limits.BLOCKS_PER_MESSAGE - 10:
        steps = [_compact_steps(view.steps)]
    summary: list[_Part] = [{"type": "divider"}, _Text(view.summary)] if view.summary else []
    return _message(head, summary, _actions(view.buttons),
                    messages.slack_cut(view.execution_id), first=steps, held=SUMMARY_SHARE)


def execution_text(view: ExecutionView) -> str:
    """The notification and screen-reader text of an execution message."""
    lines = [messages.execution_headline(_brief(view))]
    if view.summary:
        lines.append(view.summary)
    else:  # the step verdicts, like the stored summary
        lines += [s.summary for s in view.steps if s.summary and s.status != "running"]
    return message_text("\n".join(lines))


# Notices --------------------------------------------------------------------------------


def notice_blocks(notice: Notice) -> list[Block]:
    """An ephemeral reply: icon and text, its detail lines, and the hint in small print."""
    body: list[_Part] = [_Text(f"{messages.NOTICE_ICON[notice.kind]} {notice.text}")]
    if notice.details:
        body.append(_Text("\n".join(notice.details)))
    tail = [_context(notice.hint)] if notice.hint and notice.hint.strip() else []
    return _message([], body, tail, messages.slack_cut(None))


def notice_text(notice: Notice) -> str:
    lines = [f"{messages.NOTICE_ICON[notice.kind]} {notice.text}", *notice.details]
    if notice.hint:
        lines.append(notice.hint)
    return message_text("\n".join(lines))


# Approval requests -----------------------------------------------------------------------


def _approval_buttons(view: ApprovalView) -> Block:
    approve: Block = {
        "type": "button",
        "action_id": APPROVE_ACTION,
        "text": _plain(messages.approve_label(), limits.BUTTON_TEXT),
        "value": view.request_id,
        "style": "primary",
    }
    if view.checklist:
        # The approve dialog is the confirmation: it lists the checklist to tick.
        approve["action_id"] = APPROVE_CHECKLIST_ACTION
    else:
        approve["confirm"] = {
            "title": _plain(messages.approve_confirm_title(), limits.CONFIRM_TITLE),
            # The dialog shows the command as typed (cut); the message above it has the plan.
            "text": _mrkdwn(messages.approve_confirm_text(clip(view.command, 150),
                                                          view.environment),
                            limits.CONFIRM_TEXT),
            "confirm": _plain(messages.approve_label(), limits.CONFIRM_BUTTON),
            "deny": _plain(messages.cancel_label(), limits.CONFIRM_BUTTON),
            "style": "primary",
        }
    deny: Block = {
        "type": "button",
        "action_id": DENY_ACTION,
        "text": _plain(messages.deny_label(), limits.BUTTON_TEXT),
        "value": view.request_id,
        "style": "danger",
    }
    return {"type": "actions", "block_id": "opsbot_approval", "elements": [approve, deny]}


def _checkbox_options(items: Sequence[str]) -> list[Block]:
    # Values are item numbers; the text is the item (at most 75 characters, checked at load).
    return [{"text": _plain(item, limits.OPTION_TEXT), "value": str(number)}
            for number, item in enumerate(items, 1)]


def _request_modal(callback_id: str, request_id: str, channel: str | None, title: str,
                   submit: str, intro: str, block_id: str, label: str,
                   element: Block) -> Block:
    """A decision's form: `private_metadata` carries the request and its channel, since a view
    submission names neither; one required input under an intro."""
    return {
        "type": "modal",
        "callback_id": callback_id,
        # Both parts are checked ids (a request id, a channel id): short, never cut.
        "private_metadata": f"{request_id}|{channel or ''}",
        "title": _plain(title, limits.MODAL_TITLE),
        "submit": _plain(submit, limits.MODAL_BUTTON),
        "close": _plain(messages.cancel_label(), limits.MODAL_BUTTON),
        "blocks": [
            _section(intro),
            {"type": "input", "block_id": block_id, "optional": False,
             "label": _plain(label, limits.INPUT_LABEL), "element": element},
        ],
    }


def approve_modal(request_id: str, channel: str | None, command: str, environment: str,
                  checklist: Sequence[str]) -> Block:
    """The approve dialog of a request with a checklist: every item must be ticked."""
    return _request_modal(
        APPROVE_MODAL, request_id, channel, messages.checklist_modal_title(),
        messages.approve_label(), messages.checklist_modal_intro(clip(command, 1000),
                                                                 environment),
        CHECKLIST_BLOCK, messages.checklist_label(),
        {"type": "checkboxes", "action_id": CHECKLIST_ACTION,
         "options": _checkbox_options(checklist)})


def post_checklist_blocks(execution_id: str, requester: str,
                          items: Sequence[str]) -> list[Block]:
    """The post-change checklist in the change's thread: boxes for the requester to tick."""
    return [
        _section(messages.post_checklist_headline(requester), HEADLINE),
        {"type": "actions", "block_id": POST_CHECKLIST_BLOCK + execution_id,
         "elements": [{"type": "checkboxes", "action_id": POST_CHECKLIST_ACTION,
                       "options": _checkbox_options(items)}]},
    ]


def _approval_headline(view: ApprovalView) -> str:
    return messages.approval_headline(view.status, clip(view.command, COMMAND),
                                      clip(view.environment, NAME), view.emergency)


def approval_blocks(view: ApprovalView) -> list[Block]:
    """Headline, the request's lines (plan, approvals, who may approve...) and, while it is
    open, Approve (with a confirm dialog) and Deny."""
    head = [_section(_approval_headline(view), HEADLINE)]
    body: list[_Part] = [_Text("\n".join(messages.approval_lines(view)))]
    tail = [_approval_buttons(view)] if view.open else []
    return _message(head, body, tail, messages.slack_cut_request(view.request_id))


def approval_text(view: ApprovalView) -> str:
    """The notification and screen-reader text of a request message."""
    return message_text("\n".join([_approval_headline(view), *messages.approval_lines(view)]))


def deny_modal(request_id: str, channel: str | None, command: str) -> Block:
    """The form asking a denier why."""
    return _request_modal(
        DENY_MODAL, request_id, channel, messages.deny_modal_title(), messages.deny_label(),
        messages.deny_modal_intro(clip(command, 1000), request_id), DENY_REASON_BLOCK,
        messages.deny_reason_label(),
        {"type": "plain_text_input", "action_id": DENY_REASON_ACTION, "multiline": True,
         "max_length": REASON_LIMIT,
         "placeholder": _plain(messages.deny_reason_placeholder(), limits.PLACEHOLDER)})


# Alert groups ----------------------------------------------------------------------------


def alert_group_blocks(view: AlertGroupView) -> list[Block]:
    """An alert group: headline, one line per alert, the automation decisions, buttons.

    Labels and annotations are values: they show as typed and cannot ping, link or format."""
    text = group_text(view, max_alerts=ALERT_LINES, max_runs=ALERT_LINES,
                      value_limit=ALERT_VALUE, title_limit=COMMAND)
    icon = "🚨" if view.status == "firing" else "✅"
    head = [_section(f"{icon} {text.headline}", HEADLINE)]
    body: list[_Part] = [_Text("\n".join(text.alerts))]
    if text.runs:
        body += [{"type": "divider"}, _Text("\n".join([bold("Automation"), *text.runs]))]
    if text.notes:
        body.append(_context(" ".join(text.notes)))
    return _message(head, body, _actions(view.buttons), messages.slack_cut(None))


def alert_group_text(view: AlertGroupView) -> str:
    firing = sum(1 for a in view.alerts if a.status == "firing")
    head = "FIRING" if view.status == "firing" else "RESOLVED"
    return message_text(f"{head} {clip(view.title, COMMAND)} ({firing} firing)")
