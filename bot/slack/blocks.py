"""Block Kit rendering of the neutral views, so Slack shows what the console prints as text.

Nothing is cut silently: texts longer than a block allows are spread over several blocks, and
a step's long output is left to the reporter, which posts it as thread replies.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from bot import messages
from bot.reporting import Button, ExecutionView, Notice, StepView

__all__ = [
    "ACTION_PREFIX",
    "Block",
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
SECTION_LIMIT = 3000  # characters of a section's text
FIELD_LIMIT = 2000  # characters of one section field
FIELDS_PER_SECTION = 10
BUTTON_VALUE_LIMIT = 2000
BUTTON_TEXT_LIMIT = 75
BUTTONS_PER_ACTIONS = 25
BLOCKS_PER_MESSAGE = 50


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
