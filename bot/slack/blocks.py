"""Block Kit rendering of the neutral views, so Slack shows what the console prints as text.

Nothing is cut silently: texts longer than a block allows are spread over several blocks, and
a step's long output is left to the reporter, which posts it as thread replies.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from bot import messages
from bot.alerts.view import AlertGroupView
from bot.approvals.view import ApprovalView
from bot.reporting import Button, ExecutionView, Notice, StepView

__all__ = [
    "ACTION_PREFIX",
    "APPROVE_ACTION",
    "DENY_ACTION",
    "DENY_MODAL",
    "DENY_REASON_ACTION",
    "DENY_REASON_BLOCK",
    "Block",
    "alert_group_blocks",
    "alert_group_text",
    "approval_blocks",
    "approval_text",
    "deny_modal",
    "escape",
    "execution_blocks",
    "execution_text",
    "notice_blocks",
    "notice_text",
    "split_text",
]

log = logging.getLogger("opsbot.slack")

Block = dict[str, Any]

ACTION_PREFIX = "opsbot_run_"
APPROVE_ACTION = "opsbot_approve"
DENY_ACTION = "opsbot_deny"
DENY_MODAL = "opsbot_deny_modal"
DENY_REASON_BLOCK = "opsbot_deny_reason"
DENY_REASON_ACTION = "reason"
SECTION_LIMIT = 3000  # characters of a section's text
FIELD_LIMIT = 2000  # characters of one section field
FIELDS_PER_SECTION = 10
BUTTON_VALUE_LIMIT = 2000
BUTTON_TEXT_LIMIT = 75
BUTTONS_PER_ACTIONS = 25
BLOCKS_PER_MESSAGE = 50
ALERT_LINES = 15  # alerts (and automation lines) listed in a group message
CONFIRM_TEXT_LIMIT = 300  # characters of a confirm dialog's text
MODAL_TITLE_LIMIT = 24
METADATA_LIMIT = 3000  # characters of a view's private_metadata
REASON_LIMIT = 2000  # what a deny reason may hold; the command line must stay under 4000


def escape(text: str) -> str:
    """Escape the three characters Slack treats as markup, so data cannot ping or link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def split_text(text: str, limit: int) -> list[str]:
    """Pieces of at most `limit` characters, cut at line ends (inside a line only if it must)."""
    pieces: list[str] = []
    current = ""
    for line in text.split("\n"):
        while len(line) > limit:
            if current:
                pieces.append(current)
                current = ""
            pieces.append(line[:limit])
            line = line[limit:]
        candidate = f"{current}\n{line}" if current else line
        if current and len(candidate) > limit:
            pieces.append(current)
            current = line
        else:
            current = candidate
    if current or not pieces:
        pieces.append(current)
    return pieces


def _mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}


def _sections(text: str) -> list[Block]:
    return [{"type": "section", "text": _mrkdwn(part)} for part in split_text(text, SECTION_LIMIT)
            if part.strip()]


def _safe_view(view: ExecutionView) -> ExecutionView:
    """A copy whose data (typed text, handler results) is escaped; our own markup stays."""
    return replace(
        view,
        command=escape(view.command),
        actor=escape(view.actor),
        reason=escape(view.reason) if view.reason else view.reason,
        summary=escape(view.summary),
        steps=[
            replace(step, name=escape(step.name), summary=escape(step.summary),
                    progress=escape(step.progress) if step.progress else step.progress,
                    fields=tuple((escape(k), escape(v)) for k, v in step.fields))
            for step in view.steps
        ],
    )


def _field_blocks(step: StepView) -> list[Block]:
    short = [(k, v) for k, v in step.fields if len(k) + len(v) + 4 <= FIELD_LIMIT]
    long = [(k, v) for k, v in step.fields if len(k) + len(v) + 4 > FIELD_LIMIT]
    blocks: list[Block] = [
        {"type": "section",
         "fields": [_mrkdwn(f"*{k}*\n{v}") for k, v in short[i:i + FIELDS_PER_SECTION]]}
        for i in range(0, len(short), FIELDS_PER_SECTION)
    ]
    for key, value in long:
        blocks += _sections(f"*{key}*\n{value}")
    return blocks


def _button(index: int, button: Button) -> Block | None:
    if len(button.command) > BUTTON_VALUE_LIMIT:
        # A shortened command would run something else; better no button than a wrong one.
        log.warning("follow-up `%s` is too long for a button; not offered", button.label)
        return None
    label = button.label
    if len(label) > BUTTON_TEXT_LIMIT:
        label = label[: BUTTON_TEXT_LIMIT - 1] + "…"
    element: Block = {
        "type": "button",
        "action_id": f"{ACTION_PREFIX}{index}",
        "text": {"type": "plain_text", "text": label, "emoji": True},
        "value": button.command,
    }
    if button.style:
        element["style"] = button.style
    return element


def _actions(buttons: list[Button]) -> list[Block]:
    elements = [e for i, b in enumerate(buttons) if (e := _button(i, b)) is not None]
    return [
        {"type": "actions", "block_id": f"opsbot_follow_up_{i}",
         "elements": elements[i:i + BUTTONS_PER_ACTIONS]}
        for i in range(0, len(elements), BUTTONS_PER_ACTIONS)
    ]


def _step_blocks(steps: list[StepView]) -> list[Block]:
    blocks: list[Block] = []
    for step in steps:
        blocks += _sections(messages.step_line(step))
        blocks += _field_blocks(step)
    return blocks


def _compact_step_blocks(steps: list[StepView]) -> list[Block]:
    """All steps in as few sections as their text needs, for runbooks with many steps."""
    lines = []
    for step in steps:
        lines.append(messages.step_line(step))
        lines += [f"    *{k}*: {v}" for k, v in step.fields]
    return _sections("\n".join(lines))


def execution_blocks(view: ExecutionView) -> list[Block]:
    """Headline, who and which execution, one line per step with its fields, summary, buttons."""
    safe = _safe_view(view)
    blocks: list[Block] = [
        {"type": "section", "text": _mrkdwn(messages.execution_headline(safe))},
        {"type": "context", "elements": [_mrkdwn(messages.execution_context(safe))]},
    ]
    steps = _step_blocks(safe.steps)
    if len(steps) > BLOCKS_PER_MESSAGE - 10:
        steps = _compact_step_blocks(safe.steps)
    blocks += steps
    if safe.summary:
        blocks.append({"type": "divider"})
        blocks += _sections(safe.summary)
    blocks += _actions(view.buttons)
    return blocks


def execution_text(view: ExecutionView) -> str:
    """The notification and screen-reader text of an execution message."""
    safe = _safe_view(view)
    lines = [messages.execution_headline(safe)]
    if safe.summary:
        lines.append(safe.summary)
    else:  # the step verdicts, like the stored summary
        lines += [s.summary for s in safe.steps if s.summary and s.status != "running"]
    return "\n".join(lines)


def notice_blocks(notice: Notice) -> list[Block]:
    """An ephemeral reply: icon and text, its detail lines, and the hint in small print."""
    blocks = _sections(f"{messages.NOTICE_ICON[notice.kind]} {notice.text}")
    if notice.details:
        blocks += _sections("\n".join(notice.details))
    if notice.hint:
        blocks.append({"type": "context", "elements": [_mrkdwn(notice.hint)]})
    return blocks


def notice_text(notice: Notice) -> str:
    lines = [f"{messages.NOTICE_ICON[notice.kind]} {notice.text}", *notice.details]
    if notice.hint:
        lines.append(notice.hint)
    return "\n".join(lines)


# Approval requests -----------------------------------------------------------------------


def _safe_approval(view: ApprovalView) -> ApprovalView:
    """A copy whose data (typed command and reasons, plan lines, names) is escaped."""
    denial = view.denial
    return replace(
        view,
        command=escape(view.command),
        requester=escape(view.requester),
        reason=escape(view.reason) if view.reason else view.reason,
        plan=tuple(escape(line) for line in view.plan),
        approvals=tuple((escape(who), at) for who, at in view.approvals),
        approvers=escape(view.approvers),
        denial=(escape(denial[0]), escape(denial[1]) if denial[1] else denial[1], denial[2])
        if denial else None,
        note=escape(view.note) if view.note else view.note,
    )


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _approval_buttons(view: ApprovalView) -> Block:
    # The dialog shows the command as typed (clipped); the message above it has the plan.
    confirm_text = messages.approve_confirm_text(_clip(view.command, 150), view.environment)
    approve: Block = {
        "type": "button",
        "action_id": APPROVE_ACTION,
        "text": _plain(messages.approve_label()),
        "value": view.request_id,
        "style": "primary",
        "confirm": {
            "title": _plain(messages.approve_confirm_title()),
            "text": _mrkdwn(_clip(confirm_text, CONFIRM_TEXT_LIMIT)),
            "confirm": _plain(messages.approve_label()),
            "deny": _plain(messages.cancel_label()),
            "style": "primary",
        },
    }
    deny: Block = {
        "type": "button",
        "action_id": DENY_ACTION,
        "text": _plain(messages.deny_label()),
        "value": view.request_id,
        "style": "danger",
    }
    return {"type": "actions", "block_id": "opsbot_approval", "elements": [approve, deny]}


def approval_blocks(view: ApprovalView) -> list[Block]:
    """Headline, the request's lines (plan, approvals, who may approve...) and, while it is
    open, Approve (with a confirm dialog) and Deny."""
    safe = _safe_approval(view)
    blocks: list[Block] = [
        {"type": "section",
         "text": _mrkdwn(messages.approval_headline(safe.status, safe.command, safe.environment,
                                         safe.emergency))},
    ]
    blocks += _sections("\n".join(messages.approval_lines(safe)))
    if view.open:
        blocks.append(_approval_buttons(view))
    return blocks


def approval_text(view: ApprovalView) -> str:
    """The notification and screen-reader text of a request message."""
    safe = _safe_approval(view)
    return "\n".join([messages.approval_headline(safe.status, safe.command, safe.environment,
                                         safe.emergency),
                      *messages.approval_lines(safe)])


def deny_modal(request_id: str, channel: str | None, command: str) -> Block:
    """The form asking a denier why; `private_metadata` carries the request and its channel,
    since a view submission names neither."""
    return {
        "type": "modal",
        "callback_id": DENY_MODAL,
        "private_metadata": f"{request_id}|{channel or ''}"[:METADATA_LIMIT],
        "title": _plain(_clip(messages.deny_modal_title(), MODAL_TITLE_LIMIT)),
        "submit": _plain(messages.deny_label()),
        "close": _plain(messages.cancel_label()),
        "blocks": [
            {"type": "section",
             "text": _mrkdwn(_clip(messages.deny_modal_intro(escape(command), request_id),
                                   SECTION_LIMIT))},
            {
                "type": "input",
                "block_id": DENY_REASON_BLOCK,
                "optional": False,
                "label": _plain(messages.deny_reason_label()),
                "element": {
                    "type": "plain_text_input",
                    "action_id": DENY_REASON_ACTION,
                    "multiline": True,
                    "max_length": REASON_LIMIT,
                    "placeholder": _plain(messages.deny_reason_placeholder()),
                },
            },
        ],
    }


def alert_group_blocks(view: AlertGroupView) -> list[Block]:
    """An alert group: headline, one line per alert, the automation decisions, buttons.

    Every label and annotation is escaped: alert text cannot ping, link or format."""
    firing = sum(1 for a in view.alerts if a.status == "firing")
    icon = ":rotating_light:" if view.status == "firing" else ":white_check_mark:"
    head = "FIRING" if view.status == "firing" else "RESOLVED"
    blocks: list[Block] = [{"type": "section", "text": _mrkdwn(
        f"{icon} *{head}* {escape(view.title)} — {firing} firing, "
        f"{len(view.alerts) - firing} resolved")}]
    lines = []
    for alert in view.alerts[:ALERT_LINES]:
        mark = ":red_circle:" if alert.status == "firing" else ":large_green_circle:"
        summary = f" — {escape(_clip(alert.summary, 200))}" if alert.summary else ""
        lines.append(f"{mark} *{escape(alert.name)}* {escape(alert.where)}{summary} "
                     f"_({escape(alert.when)})_")
    if len(view.alerts) > ALERT_LINES:
        lines.append(f"… and {len(view.alerts) - ALERT_LINES} more")
    blocks += _sections("\n".join(lines))
    if view.runs:
        blocks.append({"type": "divider"})
        blocks += _sections("*Automation*\n" + "\n".join(
            f"• {escape(run.text)}" for run in view.runs[-ALERT_LINES:]))
    if view.notes:
        blocks.append({"type": "context",
                       "elements": [_mrkdwn(escape(" ".join(view.notes))[:2900])]})
    blocks += _actions(view.buttons)
    return blocks[:BLOCKS_PER_MESSAGE]


def alert_group_text(view: AlertGroupView) -> str:
    firing = sum(1 for a in view.alerts if a.status == "firing")
    head = "FIRING" if view.status == "firing" else "RESOLVED"
    return _clip(escape(f"{head} {view.title} ({firing} firing)"), 3000)
