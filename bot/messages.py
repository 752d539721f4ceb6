"""Every sentence opsbot says to a person, in one place, so wording stays consistent and testable.

Text uses a small markdown subset (`*bold*`, `` `code` ``) that Slack renders as mrkdwn and the
console prints as is.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.reporting import ExecutionView, Notice, StepView
from bot.runbooks.models import Runbook

__all__ = [
    "NOTICE_ICON",
    "STATUS_ICON",
    "approval_unavailable",
    "bad_listen",
    "execution_headline",
    "help_overview",
    "help_topic",
    "internal_error",
    "interrupted_summary",
    "not_in_channel",
    "output_heading",
    "output_left_out",
    "runbook_list",
    "slack_settings_missing",
    "trigger_failed",
    "unposted_result",
]

STATUS_ICON = {
    "pending": "◻️",
    "running": "⏳",
    "succeeded": "✅",
    "failed": "❌",
    "skipped": "⏭️",
    "interrupted": "⚠️",
}

NOTICE_ICON = {"error": "❌", "denied": "⛔", "refused": "🛑", "info": "ℹ️"}

META_HELP = [
    ("help [verb]", "what you may run here, or how to use one command"),
    ("runbooks", "every runbook you may run, with where it comes from"),
    ("run <runbook> [key=value ...]", "run any runbook by name"),
]
COMMON_FLAGS = (
    "Common flags: `--env ENV`, `--reason TEXT`, `--dry-run` (show the plan, change nothing)."
)


def _cmd(prefix: str, usage: str) -> str:
    return f"`{prefix} {usage}`" if prefix else f"`{usage}`"


def execution_headline(view: ExecutionView) -> str:
    icon = STATUS_ICON[view.status]
    mode = " (dry run)" if view.dry_run else ""
    verb = {
        "running": "running",
        "succeeded": "done",
        "failed": "failed",
        "interrupted": "interrupted",
    }[view.status]
    return f"{icon} `{view.command}`{mode} in *{view.environment}*: {verb}"


def execution_context(view: ExecutionView) -> str:
    parts = [f"by {view.actor}", f"execution `{view.execution_id}`"]
    if view.reason:
        parts.append(f"reason: {view.reason}")
    return " · ".join(parts)


def step_line(step: StepView) -> str:
    text = f"{STATUS_ICON[step.status]} {step.name}"
    if step.summary:
        text += f": {step.summary}"
    elif step.progress and step.status == "running":
        text += f": {step.progress}"
    return text


def help_overview(runbooks: Sequence[Runbook], command: str) -> Notice:
    lines = [f"{_cmd(command, rb.usage)}: {rb.description}" for rb in runbooks if rb.command]
    lines += [f"{_cmd(command, usage)}: {text}" for usage, text in META_HELP]
    if not any(rb.command for rb in runbooks):
        lines.insert(0, "You may not run any command here; ask an admin for a role.")
    return Notice("info", "*What you can run here*", hint=COMMON_FLAGS, details=tuple(lines))


def help_topic(runbook: Runbook, command: str) -> Notice:
    lines = [runbook.description, f"usage: {_cmd(command, runbook.usage)}"]
    for name, spec in runbook.parameters.items():
        default = "" if spec.is_required else f" (default: {spec.default})"
        lines.append(f"• `{name}` ({spec.type}){default}: {spec.help}".rstrip(": "))
    if runbook.mutating:
        lines.append("Changes the cluster; environments that require approval will ask for it.")
    return Notice(
        "info", f"*{runbook.verb or runbook.name}*", hint=COMMON_FLAGS, details=tuple(lines)
    )


def runbook_list(entries: Sequence[tuple[Runbook, str]]) -> Notice:
    lines = [
        f"`{rb.name}`{' (changes things)' if rb.mutating else ''}: {rb.description} _[{origin}]_"
        for rb, origin in entries
    ]
    return Notice("info", "*Runbooks you may run*", details=tuple(lines) or ("none",))


def approval_unavailable(runbook: str, environment: str) -> str:
    return (
        f"`{runbook}` changes `{environment}`, which requires approval, and approval requests "
        "are not available in this version of opsbot. Nothing was changed."
    )


def approval_unavailable_hint() -> str:
    return (
        "Add `--dry-run` to see the plan; nothing runs in an approval environment "
        "without approval."
    )


def usage_hint_for_unknown() -> str:
    return "Type `help` to see what you can run."


def internal_error(execution_id: str) -> str:
    return f"opsbot hit an internal error; details are in the log under execution `{execution_id}`"


def interrupted_summary() -> str:
    return (
        "opsbot stopped while this was running; it was not resumed or repeated. "
        "Check the target's state before running it again."
    )


def dry_run_summary() -> str:
    return "Dry run: nothing was changed."


def retrying(attempt: int, attempts: int, error: str) -> str:
    return f"retrying ({attempt}/{attempts}) after: {error}"


def denied_hint() -> str:
    return "Ask an admin for the role if you need it; `help` lists what you can run."


def not_in_channel(command: str) -> str:
    return (
        f"I cannot post in this channel, so `{command}` runs without a public message here. "
        "Type `/invite @opsbot` to let me post, then run it again to share the result."
    )


def unposted_result() -> str:
    return "Result, shown only to you because I cannot post in this channel:"


def output_heading(step: str, part: int, parts: int) -> str:
    return f"*{step}* output" + (f" ({part}/{parts})" if parts > 1 else "")


def output_left_out(step: str, lines: int, execution_id: str) -> str:
    plural = "line" if lines == 1 else "lines"
    return (
        f"{lines} more {plural} of *{step}* output left out of this thread; the full output is "
        f"stored with execution `{execution_id}`."
    )


def trigger_failed() -> str:
    return "opsbot hit an internal error handling this command; the details are in its log."


def slack_settings_missing(variables: Sequence[str]) -> str:
    return (
        f"opsbot serve needs {' and '.join(variables)} to talk to Slack: set the variables "
        "(SLACK_SIGNING_SECRET is not needed in Socket Mode, when SLACK_APP_TOKEN is set); "
        "see docs/slack.md"
    )


def bad_listen(listen: str) -> str:
    return f"OPSBOT_LISTEN must be HOST:PORT (like 0.0.0.0:3000), not `{listen}`"
