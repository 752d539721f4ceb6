"""Plain-text rendering of the same views Slack shows, for shell, run and demo transcripts.

Our markup (`bot/markup.py`) is dropped; every value is printed exactly as it came."""

from __future__ import annotations

from collections.abc import Sequence

from bot import messages
from bot.markup import code, plain
from bot.reporting import ExecutionView, Notice, StepView

__all__ = ["execution_text", "notice_text", "plain", "step_text"]


def execution_start(view: ExecutionView) -> str:
    mode = " (dry run)" if view.dry_run else ""
    return plain(
        f"▶ {code(view.command)}{mode} in {view.environment} · {messages.execution_context(view)}"
    )


def step_text(step: StepView, attachments: Sequence[str] = ()) -> str:
    """The step, its fields and output; `attachments` are lines saying where its files went."""
    lines = ["  " + plain(messages.step_line(step))]
    lines += [f"      {plain(name)}: {plain(value)}" for name, value in step.fields]
    if step.output:  # what a command printed, not our text: as is
        lines += ["      " + line if line else "" for line in step.output.splitlines()]
    lines += [f"      {plain(line)}" for line in attachments]
    lines += [f"      {plain(messages.announced(a.channel, a.text))}" for a in step.announcements]
    return "\n".join(lines)


def execution_end(view: ExecutionView) -> str:
    lines = [plain(messages.execution_headline(view))]
    if view.summary:
        lines.append("  " + plain(view.summary))
    lines += [f"  [{plain(b.label)}] {b.command}" for b in view.buttons]
    if view.checklist and view.status == "succeeded":
        # Slack posts it with boxes in the thread; the console lists it to do by hand.
        lines.append("  " + plain(messages.post_checklist_headline(view.actor)))
        lines += [f"    ☐ {number}. {plain(item)}" for number, item in enumerate(view.checklist, 1)]
    return "\n".join(lines)


def execution_text(view: ExecutionView) -> str:
    parts = [execution_start(view)]
    parts += [step_text(s) for s in view.steps if s.status not in ("pending", "running")]
    parts.append(execution_end(view))
    return "\n".join(parts)


def notice_text(notice: Notice) -> str:
    lines = [f"{messages.NOTICE_ICON[notice.kind]} {plain(notice.text)}"]
    lines += ["  " + plain(line) for line in notice.details]
    if notice.hint:
        lines.append("  " + plain(notice.hint))
    return "\n".join(lines)
