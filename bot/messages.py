"""Every sentence opsbot says to a person, in one place, so wording stays consistent and testable.

Our formatting is made with `bot.markup` (bold, code, italic, channel links); every value put
into a sentence is literal text, which each front end shows as typed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from bot.markup import bold, channel, code, italic
from bot.names import shown
from bot.reporting import ExecutionView, Notice, StepView

if TYPE_CHECKING:
    from bot.approvals.view import ApprovalView
from bot.runbooks.models import Runbook

__all__ = [
    "NOTICE_ICON",
    "STATUS_ICON",
    "approval_unavailable",
    "approvals_unavailable",
    "bad_listen",
    "channel_only",
    "channel_only_hint",
    "execution_headline",
    "failure_summary",
    "help_overview",
    "help_topic",
    "internal_error",
    "interrupted_summary",
    "not_in_channel",
    "output_heading",
    "output_left_out",
    "pending_needs_role",
    "rough_span",
    "runbook_list",
    "slack_settings_missing",
    "trigger_failed",
    "unposted_result",
]

STATUS_ICON = {
    "pending": "◻️",
    "running": "⏳",
    "succeeded": "✅",
    "not_checked": "❔",
    "failed": "❌",
    "refused": "🛑",
    "skipped": "⏭️",
    "interrupted": "⚠️",
    "cancelled": "⏹️",
}

NOTICE_ICON = {"error": "❌", "denied": "⛔", "refused": "🛑", "info": "ℹ️"}

META_HELP = [
    ("help [verb]", "what you may run here, or how to use one command"),
    ("runbooks", "every runbook you may run, with where it comes from"),
    ("run <runbook> [key=value ...]", "run any runbook by name"),
    ("cancel <request-id|execution-id>",
     "withdraw your approval request, or stop a running execution between steps"),
]
COMMON_FLAGS = (
    f"Common flags: {code('--env ENV')}, {code('--reason TEXT')}, {code('--dry-run')} "
    "(show the plan, change nothing)."
)


def _cmd(prefix: str, usage: str) -> str:
    return code(f'{prefix} {usage}') if prefix else code(usage)


def execution_headline(view: ExecutionView) -> str:
    icon = STATUS_ICON[view.status]
    mode = " (dry run)" if view.dry_run else ""
    verb = {
        "running": "running",
        "succeeded": "done",
        "failed": "failed",
        "refused": "refused",
        "interrupted": "interrupted",
        "cancelled": "cancelled",
    }[view.status]
    unchecked = view.not_checked
    if view.status == "succeeded" and unchecked:  # done, but not everything was checked
        icon = STATUS_ICON["not_checked"]
        verb += f", not checked: {', '.join(step.name for step in unchecked)}"
    return f"{icon} {code(view.command)}{mode} in {bold(view.environment)}: {verb}"


def not_checked_list(items: Sequence[str]) -> str:
    """`2 not checked: Pre-checks: critical alerts (ALERTMANAGER_URL is not set); ...`"""
    return f"{len(items)} not checked: {'; '.join(items)}"


def refused_summary(text: str, hint: str | None) -> str:
    """What a run refused by one of its steps ends with: the refusal, and what to do instead."""
    return f"{text} ({hint})" if hint else text


def execution_context(view: ExecutionView) -> str:
    parts = [f"by {view.actor}", f"execution {code(view.execution_id)}"]
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


def help_overview(
    runbooks: Sequence[Runbook], command: str, environments: Sequence[str] | None = None
) -> Notice:
    """`environments`: the ones this channel accepts, when the default is not among them."""
    lines = [f"{_cmd(command, rb.usage)}: {rb.description}" for rb in runbooks if rb.command]
    lines += [f"{_cmd(command, usage)}: {text}" for usage, text in META_HELP]
    if not any(rb.command for rb in runbooks):
        lines.insert(0, "You may not run any command here; ask an admin for a role.")
    elif environments is not None:
        flags = " or ".join(code(f'--env {name}') for name in environments)
        lines.insert(0, f"This channel does not take the default environment: add {flags}.")
    return Notice("info", bold("What you can run here"), hint=COMMON_FLAGS, details=tuple(lines))


def help_topic(runbook: Runbook, command: str) -> Notice:
    lines = [runbook.description, f"usage: {_cmd(command, runbook.usage)}"]
    for name, spec in runbook.parameters.items():
        default = "" if spec.is_required else f" (default: {spec.default})"
        lines.append(f"• {code(name)} ({spec.type}){default}: {spec.help}".rstrip(": "))
    if runbook.mutating:
        lines.append("Changes the cluster; environments that require approval will ask for it.")
    return Notice(
        "info", bold(runbook.verb or runbook.name), hint=COMMON_FLAGS, details=tuple(lines)
    )


def runbook_list(entries: Sequence[tuple[Runbook, str]]) -> Notice:
    lines = [
        f"{code(rb.name)}{' (changes things)' if rb.mutating else ''}: {rb.description} "
        f"{italic(f'[{origin}]')}"
        for rb, origin in entries
    ]
    return Notice("info", bold("Runbooks you may run"), details=tuple(lines) or ("none",))


def approval_unavailable(runbook: str, environment: str) -> str:
    return (
        f"{code(runbook)} changes {code(environment)}, which requires approval, and this opsbot "
        "process has no approval service to open a request with. Nothing was changed."
    )


def approvals_unavailable() -> str:
    return "This opsbot process has no approval service: approval commands are unavailable."


def approval_unavailable_hint() -> str:
    return (
        f"Add {code('--dry-run')} to see the plan; nothing runs in an approval environment "
        "without approval."
    )


def unstorable_input(reason: str) -> str:
    what = ("a NUL character" if reason == "nul_character"
            else "a character that is not valid text (a lone UTF-16 surrogate)")
    return (f"Your input contains {what}, which opsbot cannot record, so nothing ran. "
            "Type it again without that character.")


def command_not_recorded() -> str:
    return ("opsbot could not record your command (its database did not answer), so nothing "
            "ran. Try again in a minute.")


def usage_hint_for_unknown() -> str:
    return f"Type {code('help')} to see what you can run."


# Numbers, durations and flags as people type them -------------------------------------------


def not_a_whole_number(what: str, text: str) -> str:
    return f"{what} must be a whole number written with the digits 0-9, not {code(shown(text))}"


def number_too_large(what: str) -> str:
    return f"{what} is too large"


def not_a_duration(text: str) -> str:
    return f"{code(shown(text))} is not a duration"


def duration_hint() -> str:
    return "write e.g. 30m, 2h or 1d (digits 0-9 and d, h, m, s, largest unit first)"


def duration_too_long(what: str, text: str, longest: str) -> str:
    return f"{what} is at most {longest}; {code(shown(text))} is longer"


def duration_too_short(what: str, text: str, shortest: str) -> str:
    return f"{what} is at least {shortest}; {code(shown(text))} is shorter"


def given_twice(first: str, second: str, what: str) -> str:
    if first == second:
        return f"{code(first)} is given twice; give it once"
    return f"{code(first)} and {code(second)} both give {what}; give it once"


def flag_takes_no_value(flag: str) -> str:
    return f"{code(flag)} takes no value; give {code(flag)} alone"


def app_not_in_environment(app: str, environment: str, elsewhere: Sequence[str]) -> str:
    where = " and ".join(elsewhere) if elsewhere else "no environment"
    return f"{code(app)} is not deployed to {environment}; it is in {where}"


def app_not_in_environment_hint(elsewhere: Sequence[str]) -> str:
    if not elsewhere:
        return "the configuration lists the environments of each app (apps.<app>.environments)"
    return "add " + " or ".join(code(f"--env {name}") for name in elsewhere)


def internal_error(execution_id: str) -> str:
    return ("opsbot hit an internal error; details are in the log under execution "
            f"{code(execution_id)}")


def clock_time(at: datetime, now: datetime) -> str:
    """A time as people read it: `12:25 UTC` on `now`'s day, `2026-12-03 12:25 UTC` another."""
    at, today = at.astimezone(UTC), now.astimezone(UTC).date()
    return at.strftime("%H:%M UTC" if at.date() == today else "%Y-%m-%d %H:%M UTC")


def trigger_not_started(command: str, received: str) -> str:
    return (f"{code(command)} (received {received}) was not run: opsbot restarted after "
            "acknowledging it and before starting it. Check the target's state and send it "
            "again if it is still needed.")


def trigger_resumed(command: str, received: str) -> str:
    return (f"{code(command)} (received {received}) is starting now: opsbot restarted after "
            "acknowledging it and before starting it.")


def interrupted_summary() -> str:
    return (
        "opsbot stopped while this was running; it was not resumed or repeated. "
        "Check the target's state before running it again."
    )


def dry_run_summary() -> str:
    return "Dry run: nothing was changed."


def done_summary(dry_run: bool, not_checked: Sequence[str]) -> str:
    """How a run that did not fail ends: empty (its steps say it), or what was not checked."""
    parts = [dry_run_summary()] if dry_run else []
    if not_checked:
        parts.append(not_checked_list(not_checked))
    return " ".join(parts)


def retrying(attempt: int, attempts: int, error: str) -> str:
    return f"retrying ({attempt}/{attempts}) after: {error}"


def approval_denied_hint() -> str:
    return f"Another approver can decide it; {code('pending')} lists open requests."


def channel_only(environment: str, channels: Sequence[str]) -> str:
    allowed = ", ".join(channel(c) for c in channels)
    return f"commands for {code(environment)} are only accepted in {allowed}"


def role_channel_only(who: str, runbook: str, environment: str,
                      roles: Sequence[tuple[str, Sequence[str]]]) -> str:
    """A role the user holds grants this, but only in other channels."""
    where = "; ".join(f"{code(role)} in {', '.join(channel(c) for c in chans)}"
                      for role, chans in roles)
    return (f"{who} may run {code(runbook)} in {code(environment)} only from the channels "
            f"of their role: {where}")


def config_checklist_too_long(most: int) -> str:
    return f"a checklist holds at most {most} items (Slack shows no more in one dialog)"


def config_checklist_item(item: str, longest: int) -> str:
    return (f"checklist item {item[:40]!r}: one line of 1 to {longest} characters "
            "(Slack cuts a longer one)")


def config_channel_id(what: str, value: str) -> str:
    return (f"{what}: {value!r} is not a Slack channel id; name channels by id (C0DEPLOYS, from "
            "the channel's details), since a channel's name can change")


def channel_only_hint() -> str:
    return (f"Run it from one of those channels; {code('help')} in this channel lists what it "
            "accepts.")


def failure_summary(failed: StepView | None, cleanup: Sequence[StepView]) -> str:
    """Why an execution failed, and how each on_failure step that ran ended."""
    parts = [f"{failed.name} failed: {failed.summary}" if failed and not failed.on_failure
             else "failed"]
    for step in cleanup:
        if step.status in ("succeeded", "not_checked"):
            parts.append(f"{step.name}: {step.summary}" if step.summary else f"{step.name}: done")
        else:
            parts.append(f"{step.name} failed too: {step.summary}")
    return "; then ".join(parts)


def pending_needs_role(user: str) -> str:
    return f"{user} holds no role, so the list of open approval requests is not shown"


def denied_hint() -> str:
    return f"Ask an admin for the role if you need it; {code('help')} lists what you can run."


def not_in_channel(command: str) -> str:
    return (
        f"I cannot post in this channel, so {code(command)} runs without a public message here. "
        f"Type {code('/invite @opsbot')} to let me post, then run it again to share the result."
    )


def unposted_result() -> str:
    return "Result, shown only to you because I cannot post in this channel:"


def unrecorded_result() -> str:
    return ("Result, shown only to you: my database did not answer, so the channel's message "
            "still shows an earlier state; I will update it once the database answers again.")


def output_heading(step: str, part: int, parts: int) -> str:
    return f"{bold(step)} output" + (f" ({part}/{parts})" if parts > 1 else "")


def output_left_out(step: str, lines: int, execution_id: str) -> str:
    plural = "line" if lines == 1 else "lines"
    return (
        f"{lines} more {plural} of {bold(step)} output left out of this thread; the full output is "
        f"stored with execution {code(execution_id)}."
    )


def slack_cut(execution_id: str | None) -> str:
    """Said where a Slack message had to be cut short."""
    where = (f"; the full record is stored with execution {code(execution_id)}"
             if execution_id else "")
    return f"✂️ Slack takes no more in one message, so the rest is left out{where}."


def slack_cut_request(request_id: str) -> str:
    return (f"✂️ Slack takes no more in one message, so the rest of request {code(request_id)} "
            "is left out: see the whole plan with the same command and "
            f"{code('--dry-run')} before approving.")


def trigger_failed() -> str:
    return "opsbot hit an internal error handling this command; the details are in its log."


def slack_settings_missing(variables: Sequence[str]) -> str:
    return (
        f"opsbot serve needs {' and '.join(variables)} to talk to Slack: set the variables "
        "(SLACK_SIGNING_SECRET is not needed in Socket Mode, when SLACK_APP_TOKEN is set); "
        "see docs/slack.md"
    )


def bad_listen(listen: str) -> str:
    return f"OPSBOT_LISTEN must be HOST:PORT (like 0.0.0.0:3000), not {code(listen)}"


def target_locked(target: str, environment: str, holder: str, command: str,
                  execution_id: str, since: datetime) -> str:
    return (
        f"{target} in {code(environment)} is busy: {holder} is running {code(command)} "
        f"(execution {code(execution_id)}) since {since:%H:%M:%S} UTC. Nothing was changed."
    )


def locked_hint() -> str:
    return ("Wait for it to finish. If it is stuck, an admin can run "
            f"{code('unlock <app> --env <environment>')}.")


def would_unlock(target: str, environment: str, holder: str | None,
                 execution_id: str | None) -> str:
    if holder is None:
        return f"{target} in {code(environment)} is not locked; nothing to do"
    return (
        f"would remove the lock {holder} holds on {target} in {code(environment)} "
        f"(execution {code(execution_id)})"
    )


def unlocked(target: str, environment: str, holder: str | None, execution_id: str | None) -> str:
    if holder is None:
        return f"{target} in {code(environment)} was not locked; nothing to do"
    return (
        f"removed the lock {holder} held on {target} in {code(environment)} "
        f"(execution {code(execution_id)})"
    )


# Verification against Prometheus (handlers/analysis.py) ---------------------------------------


def metric_value(value: float | None, unit: str = "") -> str:
    """A measured value for people: ratios as percentages, seconds as ms or s."""
    if value is None or value != value:  # NaN
        return "no data"
    if unit == "ratio":
        return f"{_number(value * 100)}%"
    if unit in ("percent", "%"):
        return f"{_number(value)}%"
    if unit in ("seconds", "s"):
        return f"{_number(value * 1000)} ms" if abs(value) < 1 else f"{_number(value)} s"
    return f"{_number(value)} {unit}".rstrip()


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def not_checked(reason: str) -> str:
    return f"not checked: {reason}"


def analysis_no_prometheus() -> str:
    return "PROMETHEUS_URL is not set"


def analysis_no_metrics(app: str) -> str:
    return f"no analysis configured (no metrics under apps.{app}.analysis)"


def analysis_check(reason: str) -> str:
    """The analysis as a check not run, for the execution's summary."""
    return f"analysis ({reason})"


def analysis_dry_run(metrics: int, checks: int, interval: float) -> str:
    plural = "metric" if metrics == 1 else "metrics"
    spacing = f", {interval:g} s apart" if checks > 1 else ""
    return f"would verify {metrics} {plural} over {checks} checks{spacing}"


def analysis_waiting(seconds: float) -> str:
    return f"waiting {seconds:g} s before the first check"


def analysis_progress(
    check: int, checks: int, parts: Sequence[tuple[str, str, bool | None]]
) -> str:
    """`check 2/5: error-ratio 0.4% ✓, p99-latency 120 ms ✓` (? when inconclusive)."""
    marks = {True: "✓", False: "✗", None: "?"}
    shown = ", ".join(f"{name} {value} {marks[ok]}" for name, value, ok in parts)
    return f"check {check}/{checks}: {shown}"


def analysis_passed(checks: int, planned: int) -> str:
    return f"analysis passed: {checks}/{planned} checks"


def analysis_failed(metric: str, value: str, condition: str, failed: int, checks: int) -> str:
    return (
        f"analysis failed: {metric} {value} (needs {condition}) in {failed} of {checks} "
        f"{'check' if checks == 1 else 'checks'}"
    )


def analysis_inconclusive(metric: str, count: int, checks: int, limit: int) -> str:
    return (
        f"analysis inconclusive: {metric} had no value in {count} of {checks} "
        f"{'check' if checks == 1 else 'checks'} (at most {limit} allowed)"
    )


def analysis_broken(metric: str, error: str) -> str:
    return f"analysis inconclusive: the {metric} check cannot run: {error}"


def analysis_condition(condition: str) -> str:
    return f"needs {condition}"


def analysis_metric_field(
    last: str, condition: str, passed: int, failed: int, inconclusive: int
) -> str:
    return (
        f"last {last} · {analysis_condition(condition)} · {passed} met, {failed} missed, "
        f"{inconclusive} inconclusive"
    )


def analysis_graph_title(app: str, environment: str, metrics: Sequence[str]) -> str:
    return f"{app} in {environment}: {', '.join(metrics)}"


# Pre-checks before a deploy (handlers/prechecks.py) -------------------------------------------


def precheck_alerts_field_ok() -> str:
    return "✓ none firing"


def precheck_alerts_field_skipped() -> str:
    return not_checked("ALERTMANAGER_URL is not set")


def precheck_alerts_not_checked() -> str:
    return "critical alerts (ALERTMANAGER_URL is not set)"


def lock_field(target: str, environment: str) -> str:
    return f"{target} in {environment}"


def precheck_alerts_unreachable(error: str) -> str:
    return f"critical alerts (Alertmanager did not answer: {error})"


def precheck_verify_not_checked(reason: str) -> str:
    return f"verification after the rollout ({reason})"


def precheck_refused_unchecked(app: str, environment: str, unchecked: Sequence[str]) -> str:
    return (f"not deploying {app} to {environment}: {not_checked_list(unchecked)}, and "
            f"{environment} refuses deploys whose checks cannot run (set "
            f"environments.{environment}.deploy.unchecked: warn to deploy with them unchecked)")


def precheck_off() -> str:
    return "off for this environment"


def precheck_alerts_field_failed(alerts: Sequence[tuple[str, datetime | None]]) -> str:
    return "✗ " + ", ".join(_alert(name, since) for name, since in alerts)


def _alert(name: str, since: datetime | None) -> str:
    return f"{name} firing since {since:%H:%M} UTC" if since else f"{name} firing"


def precheck_health_field(ok: bool, state: str) -> str:
    return f"{'✓' if ok else '✗'} {state}"


def precheck_alerts_failed(app: str, environment: str, names: Sequence[str]) -> str:
    plural, it = ("alert", "it") if len(names) == 1 else ("alerts", "them")
    return (
        f"critical {plural} firing for {app} in {environment}: {', '.join(names)}; "
        f"resolve {it} or silence {it} first"
    )


def precheck_unhealthy(workload: str, state: str) -> str:
    return (
        f"{workload} is not healthy ({state}); let it recover or fix it first, then deploy"
    )


def precheck_no_alerts() -> str:
    return "no critical alerts"


def precheck_healthy(workload: str, state: str) -> str:
    return f"{workload} {state}"


def precheck_passed(app: str, environment: str, checks: Sequence[str],
                    unchecked: Sequence[str] = ()) -> str:
    if not checks and not unchecked:
        return f"pre-checks are off for {app} in {environment}"
    if not checks:
        return f"no pre-check ran for {app} in {environment}: {not_checked_list(unchecked)}"
    text = f"pre-checks passed for {app} in {environment}: {', '.join(checks)}"
    return f"{text}; {not_checked_list(unchecked)}" if unchecked else text


# The deploy gate: the image exists, its vulnerabilities (handlers/deploy/gate.py) -------------


def image_field_found(digest: str | None) -> str:
    return f"✓ in the registry ({digest[:19]}…)" if digest else "✓ in the registry"


def image_found(image: str) -> str:
    return f"{image} is in its registry"


def image_missing(image: str, registry: str) -> str:
    return (f"{code(image)} is not in its registry ({registry} has no such manifest); "
            "push it first, or check the tag")


def image_not_checked(image: str, reason: str) -> str:
    return f"image {image} ({reason})"


def image_bad_reference(image: str, reason: str) -> str:
    return f"{code(image)} is not an image reference: {reason}"


def image_no_secret(name: str, namespace: str, reason: str) -> str:
    return f"cannot read the registry credentials Secret {name} in {namespace}: {reason}"


def image_bad_secret(name: str, namespace: str) -> str:
    return (f"Secret {name} in {namespace} is not of type kubernetes.io/dockerconfigjson "
            "with a .dockerconfigjson key")


def image_bad_ca_file(path: str, reason: str) -> str:
    return f"cannot read the registry's CA bundle {path}: {reason}"


def image_bad_credentials_file(path: str, reason: str) -> str:
    return f"cannot read registry credentials from {path}: {reason}"


def vulnerability_counts(critical: int, high: int) -> str:
    return f"{critical} critical, {high} high"


def vulnerability_limits(max_critical: int, max_high: int | None) -> str:
    high = "any high" if max_high is None else f"{max_high} high"
    return f"at most {max_critical} critical, {high}"


def vulnerability_field_ok(counts: str, source: str) -> str:
    return f"✓ {counts} ({source})"


def vulnerability_field_over(counts: str, limits: str, source: str) -> str:
    return f"✗ {counts}, over the limits ({limits}; {source})"


def vulnerability_field_accept(counts: str, limits: str, source: str) -> str:
    return f"⚠ {counts}, over the limits ({limits}; {source}): approvers accept them"


def vulnerability_passed(counts: str) -> str:
    return f"vulnerabilities {counts}"


def vulnerability_accepted(image: str, counts: str) -> str:
    return f"{image} carries {counts}, over the limits, for approvers to accept"


def vulnerability_refused(image: str, counts: str, limits: str, environment: str) -> str:
    return (f"{code(image)} carries {counts} vulnerabilities, over the limits for "
            f"{environment} ({limits}); fix them and build a new image, or change "
            f"environments.{environment}.deploy.vulnerabilities")


def vulnerability_no_report(image: str) -> str:
    return f"vulnerabilities (no VulnerabilityReport for {image})"


def vulnerability_unreadable(reason: str) -> str:
    return f"vulnerabilities (VulnerabilityReports could not be read: {reason})"


def vulnerability_report_source(namespace: str, name: str) -> str:
    return f"VulnerabilityReport {namespace}/{name}"


# Attachments in the console --------------------------------------------------------------------


def attachment_saved(title: str, path: str) -> str:
    return f"📎 {title}: {path}"


def attachment_not_saved(title: str, error: str) -> str:
    return f"📎 {title}: not saved ({error})"


def run_for_real_label() -> str:
    return "Run it"


# Approvals -------------------------------------------------------------------------------


def approval_headline(status: str, command: str, environment: str,
                      emergency: bool = False) -> str:
    if emergency:
        return f"🚨 {code(command)} in {bold(environment)}: ran under break-glass, " \
            f"{_break_glass_state(status)}"
    icon = {"pending": "🟡", "approved": "✅", "executed": "✅", "denied": "⛔", "expired": "⌛",
            "cancelled": "🚫", "void": "♻️"}.get(status, "•")
    state = {"pending": "awaiting approval", "approved": "approved", "executed": "approved and run",
             "denied": "denied", "expired": "expired", "cancelled": "cancelled",
             "void": "void: nothing ran"}.get(status, status)
    return f"{icon} {code(command)} in {bold(environment)}: {state}"


def _break_glass_state(status: str) -> str:
    # A break-glass request is "approved" once acknowledged: after the fact, never before.
    return {"pending": "awaiting acknowledgement", "approved": "acknowledged",
            "executed": "acknowledged", "expired": "never acknowledged",
            "denied": "denied after the fact"}.get(status, status)


def approval_lines(view: ApprovalView) -> list[str]:
    if view.emergency:
        lines = [f"🚨 Break-glass by {view.requester}: {view.reason} "
                 f"({_break_glass_state(view.status)}); it ran without prior approval"]
        if view.approvals:
            who, at = view.approvals[0]
            lines.append(f"Acknowledged by {who} at {at:%H:%M} UTC")
        elif view.open:
            lines.append(f"Must be acknowledged by: {view.approvers}")
        lines.append(f"Request {code(view.request_id)}")
        return lines
    lines = [f"Requested by {view.requester}" + (f": {view.reason}" if view.reason else "")]
    lines.append(bold("Plan"))
    lines.extend(f"• {line}" for line in view.plan or ("(no changes listed)",))
    if view.checklist:
        lines.append(bold("Checklist") + " (each approver confirms every item)")
        lines.extend(f"☐ {number}. {item}" for number, item in enumerate(view.checklist, 1))
    got = ", ".join(f"{who} at {at:%H:%M} UTC" for who, at in view.approvals) or "none yet"
    lines.append(f"Approvals: {len(view.approvals)} of {view.required} ({got})")
    if view.open:
        not_self = "" if view.allow_self else " · not the requester"
        lines.append(f"May approve: {view.approvers}{not_self} · "
                     f"expires {view.expires_at:%H:%M} UTC")
    if view.denial:
        who, reason, at = view.denial
        lines.append(f"Denied by {who} at {at:%H:%M} UTC" + (f": {reason}" if reason else ""))
    if view.note:
        lines.append(view.note)
    if view.execution_id:
        lines.append(f"Execution {code(view.execution_id)}")
    lines.append(f"Request {code(view.request_id)}")
    return lines


def approval_requested(request_id: str, environment: str, required: int, approvers: str) -> str:
    return (f"{code(environment)} requires approval: request {code(request_id)} is waiting for "
            f"{required} approval{'s' if required != 1 else ''} from {approvers}")


def approval_hint(request_id: str, checklist: int = 0) -> str:
    approve = f"approve {request_id}" + (f" --confirm {_all_items(checklist)}"
                                         if checklist else "")
    return (f"An approver runs {code(approve)}" + (" after checking each item of the checklist"
                                                   if checklist else "")
            + f"; you may {code(f'cancel {request_id}')}.")


def _all_items(count: int) -> str:
    return ",".join(str(n) for n in range(1, count + 1))


def checklist_unconfirmed(request_id: str, missing: Sequence[str]) -> str:
    items = "; ".join(missing)
    return (f"{code(request_id)} has a checklist: approving needs every item confirmed, and "
            f"{len(missing)} {'is' if len(missing) == 1 else 'are'} not: {items}")


def checklist_hint(request_id: str, count: int, source: str) -> str:
    typed = code(f"approve {request_id} --confirm {_all_items(count)}")
    if source == "slack":
        return f"Click Approve and tick each item in the dialog, or type {typed} once checked."
    return f"Check each item, then run {typed}."


def checklist_no_such_item(request_id: str, count: int) -> str:
    if not count:
        return f"{code(request_id)} has no checklist: approve it without {code('--confirm')}"
    return f"{code(request_id)}'s checklist has items 1 to {count}"


def checklist_modal_title() -> str:
    return "Approve"


def checklist_modal_intro(command: str, environment: str) -> str:
    return (f"Approve {code(command)} in {code(environment)}? Confirm each item of the "
            "checklist:")


def approve_form_failed(request_id: str) -> str:
    return (f"The approve dialog for {code(request_id)} could not be opened; type "
            f"{code(f'approve {request_id} --confirm ...')} with the checklist's item numbers.")


def checklist_label() -> str:
    return "Checklist"


def checklist_modal_missing() -> str:
    return "Tick every item: approving needs each one confirmed."


def post_checklist_headline(requester: str) -> str:
    return f"📋 {bold('After the change')}: {requester}, tick each item once done"


def post_checklist_ticked(user: str, done: int, total: int) -> str:
    return f"{user} ticked {done} of {total}" + (": all done ✅" if done == total else "")


def post_checklist_not_recorded() -> str:
    return "Your tick was not recorded (opsbot's database did not answer); tick it again."


def post_checklist_not_yours(requester: str) -> str:
    return f"Only {requester}, who asked for the change, ticks this checklist."


def approval_recorded(view: ApprovalView) -> str:
    return (f"approval recorded for {code(view.request_id)} "
            f"({len(view.approvals)} of {view.required})")


def approval_not_found(request_id: str) -> str:
    return f"there is no approval request {code(request_id)}"


def approval_not_open(request_id: str, status: str) -> str:
    return f"request {code(request_id)} is {status}; nothing to decide"


def approval_expired(request_id: str) -> str:
    return f"request {code(request_id)} has expired; ask for it again"


def self_approval_refused() -> str:
    return "you cannot approve your own request; another approver must"


def not_an_approver(user: str, view: ApprovalView, decision: str = "approve") -> str:
    return f"{user} may not {decision} {code(view.request_id)}; approvers: {view.approvers}"


def already_approved(request_id: str) -> str:
    return f"you already approved {code(request_id)}"


def only_requester_cancels(view: ApprovalView) -> str:
    return f"only {view.requester}, who asked, can cancel {code(view.request_id)}"


def plan_changed(view: ApprovalView) -> str:
    return (f"the target changed since {code(view.request_id)} was approved, so the approval is "
            "void and nothing ran; request it again to approve the new plan")


def request_expired_notice(view: ApprovalView) -> str:
    return f"your request {code(view.request_id)} ({code(view.command)}) expired without approval"


def break_glass_unacknowledged(view: ApprovalView) -> str:
    return (f"nobody acknowledged your break-glass change {code(view.request_id)} "
            f"({code(view.command)}) in time; reminders have stopped")


def approval_not_started(view: ApprovalView, problem: str | None) -> str:
    why = f" ({problem})" if problem else ""
    return (f"{code(view.request_id)} was approved but its run never started{why}, so nothing "
            "ran and it will not run later; request it again if it is still needed")


def approval_run_interrupted(view: ApprovalView) -> str:
    return (f"the run of {code(view.request_id)} was interrupted (opsbot stopped or failed while "
            "it ran) and is not resumed or repeated; check the target and request it again "
            "if needed")


def approval_never_started() -> str:
    return "opsbot stopped before it started"


def request_denied_notice(view: ApprovalView) -> str:
    who, reason, _ = view.denial or ("someone", None, None)
    return f"{who} denied {code(view.command)}" + (f": {reason}" if reason else "")


def preview_failed(problem: str | None) -> str:
    return f"the plan could not be made, so no approval was requested: {problem}"


def secret_params_need_no_approval() -> str:
    return "runbooks with secret parameters cannot wait for approval (the secret is not kept)"


def pending_list(views: Sequence[ApprovalView]) -> Notice:
    lines = tuple(
        f"{code(v.request_id)} {code(v.command)} in {v.environment} by {v.requester}: "
        f"{len(v.approvals)}/{v.required}, expires {v.expires_at:%H:%M} UTC"
        for v in views
    )
    return Notice("info", bold("Pending approval requests"), details=lines or ("none",))


# The demo (bot/console/demo.py) and demo scripts (bot/console/session.py) ------------------


def demo_no_prometheus() -> str:
    return ("Prometheus is not installed: deploys are not verified "
            "(apt-get install prometheus to see verification)")


def demo_prometheus_failed(problem: str) -> str:
    return f"Prometheus did not start ({problem}): deploys are not verified"


def demo_prometheus_on(url: str) -> str:
    return f"Prometheus at {url} scrapes the simulated apps: deploys are verified"


def demo_no_alertmanager() -> str:
    return (f"Alertmanager is not installed: alerts are off and {code('silence')} cannot work "
            "(apt-get install prometheus-alertmanager to see alerts)")


def demo_alerts_need_prometheus() -> str:
    return "Alerts are off: the demo's alert rules need Prometheus to evaluate them"


def demo_alertmanager_failed(problem: str) -> str:
    return f"Alertmanager did not start ({problem}): alerts are off"


def demo_alerts_on(url: str) -> str:
    return (f"Alertmanager at {url} posts the demo's alerts to this console: alerts are on "
            f"and {code('silence')} works")


def demo_alerts_howto() -> str:
    return ("Alert messages (🚨) appear between commands; while you type, under the prompt, "
            "which is shown again (what you typed stays typed; Ctrl-R shows it).")


def script_waiting(alertname: str, status: str, seconds: float) -> str:
    return f"⏳ waiting up to {seconds:g}s for alert {alertname} to be shown {status}"


def script_already_shown(alertname: str, status: str) -> str:
    return f"⏳ alert {alertname} is shown {status} above: no need to wait"


def script_wait_timed_out(number: int, alertname: str, status: str, seconds: float) -> str:
    return f"❌ line {number}: alert {alertname} was not shown {status} within {seconds:g}s"


def script_wait_skipped(number: int, alertname: str) -> str:
    return f"⏭ line {number}: alerts are off in this demo; not waiting for {alertname}"


def script_bad_wait(number: int, line: str) -> str:
    expected = "wait alert NAME [firing|resolved] [--within DURATION]"
    return f"❌ line {number}: expected {code(expected)}, got {code(line)}"


# Approvals in Slack (bot/slack/board.py, bot/slack/interactions.py) ------------------------


def approve_label() -> str:
    return "Approve"


def deny_label() -> str:
    return "Deny"


def cancel_label() -> str:
    return "Cancel"


def approve_confirm_title() -> str:
    return "Approve this change?"


def approve_confirm_text(command: str, environment: str) -> str:
    return (f"{code(command)} runs in {bold(environment)} as soon as the approvals are complete, "
            "if its plan is still the one shown.")


def deny_modal_title() -> str:
    return "Deny request"


def deny_modal_intro(command: str, request_id: str) -> str:
    return f"Deny {code(command)} (request {code(request_id)}). The requester sees your reason."


def deny_reason_label() -> str:
    return "Why deny it?"


def deny_reason_placeholder() -> str:
    return "What should change before it is requested again"


def deny_reason_required() -> str:
    return "Say why, so the requester knows what to change."


def deny_form_failed(request_id: str) -> str:
    return (f"the deny form could not be opened; type {code(f'deny {request_id} <reason>')} "
            "to deny it instead")



def emergency_not_needed(runbook: str, environment: str) -> str:
    return (f"{code('--emergency')} is only for changes that need approval; {code(runbook)} in "
            f"{code(environment)} does not, so run it without the flag")


def break_glass_denied(user: str, environment: str) -> str:
    return (f"{user} may not use --emergency in {code(environment)}; ask for approval instead "
            "(a role with break_glass: true is needed)")


def break_glass_announcement(view: ApprovalView) -> str:
    return (f"🚨 {bold('Break-glass')} in {bold(view.environment)}: {view.requester} ran "
            f"{code(view.command)} without approval. Reason: {view.reason}. An approver must "
            f"acknowledge it: {code(f'approve {view.request_id}')}.")


def break_glass_reminder(view: ApprovalView) -> str:
    return (f"⏰ Break-glass {code(view.command)} in {bold(view.environment)} by {view.requester} "
            f"is still not acknowledged: {code(f'approve {view.request_id}')} ({view.approvers}).")


def break_glass_acknowledged(view: ApprovalView) -> str:
    return f"acknowledged the break-glass change {code(view.request_id)} ({code(view.command)})"


def requests_only_in(environment: str, channels: Sequence[str]) -> str:
    where = ", ".join(channel(c) for c in channels)
    return f"approval requests for {code(environment)} are only accepted in {where}"


def rough_span(length: timedelta | float) -> str:
    """`45 s`, `12 min`, `7 h`, `3 d`: a length of time (a timedelta or seconds), roughly."""
    seconds = abs(length.total_seconds() if isinstance(length, timedelta) else length)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


# Logs, metrics, graph and Grafana links (issue 14 items 1-3) ----------------------------------


def logs_no_container(app: str, container: str, containers: Sequence[str]) -> str:
    return (f"{app} has no container {code(shown(container))}; its containers: "
            f"{', '.join(code(c) for c in containers)}")


def logs_window(since: str | None, tail: int | None, wanted: int, previous: bool) -> str:
    parts = []
    if since:
        parts.append(f"last {since}")
    parts.append(f"newest {wanted} lines" if tail or not since else f"at most {wanted} lines")
    if previous:
        parts.append("previous containers")
    return ", ".join(parts)


def logs_left_out(lines: int, max_lines: int, max_bytes: int) -> str:
    return (f"{lines} older line{'s' if lines != 1 else ''} (logs keep at most {max_lines} "
            f"lines and {max_bytes // 1024} KiB)")


def logs_summary(app: str, lines: int, pods: int, *, from_loki: bool) -> str:
    where = "from Loki" if from_loki else f"from {pods} pod{'s' if pods != 1 else ''}"
    if not lines:
        return f"{app}: no log lines {where}"
    return f"{app}: {lines} log line{'s' if lines != 1 else ''} {where}"


def logs_pods_left_out(pods: int, kept: int) -> str:
    return f"({pods} pods; the logs of the newest {kept} are shown)"


def logs_pod_gone(source: str) -> str:
    return f"({source}: the pod is gone)"


def logs_unavailable(source: str, error: str) -> str:
    return f"({source}: no log: {error})"


def logs_progress(pods: int) -> str:
    return f"read the logs of {pods} pod{'s' if pods != 1 else ''}"


def logs_source_kubernetes(pods: int, previous: bool) -> str:
    what = "previous containers of " if previous else ""
    return f"Kubernetes API, {what}{pods} pod{'s' if pods != 1 else ''}"


def logs_source_loki(url: str, query: str) -> str:
    return f"Loki at {url}: {code(query)}"


def logs_file_title(app: str, environment: str, lines: int) -> str:
    return f"logs of {app} in {environment} ({lines} lines)"


def logs_inline_note(shown_lines: int, lines: int) -> str:
    return f"(the newest {shown_lines} of {lines} lines; all of them are in the attached file)"


SIGNAL_NAMES = {
    "request_rate": "Request rate",
    "error_ratio": "Error ratio",
    "p99_latency": "p99 latency",
    "cpu": "CPU of limit",
    "memory": "Memory of limit",
    "restarts": "Restarts",
}


def signal_value(signal: str, value: float | None) -> str:
    """A golden signal for people; None (or NaN) is "no data", never 0."""
    if value is None or value != value:
        return "no data"
    if signal == "request_rate":
        return f"{metric_value(value)} req/s"
    if signal in ("error_ratio", "cpu", "memory"):
        return metric_value(value, "ratio")
    if signal == "p99_latency":
        return metric_value(value, "s")
    if signal == "restarts":
        return f"{value:.0f}"
    return metric_value(value)


def signal_failed(error: str) -> str:
    return f"not measured: {error}"


def metrics_summary(app: str, environment: str, measured: int, signals: int) -> str:
    if not measured:
        return f"{app} in {environment}: no data for any of {signals} signals"
    return f"{app} in {environment}: {measured} of {signals} signals have data"


def metrics_no_prometheus() -> str:
    return "PROMETHEUS_URL is not set: there are no metrics to show"


def metrics_graph_title(app: str, environment: str, since: str) -> str:
    return f"{app} in {environment}, last {since}"


def metrics_restarts_label(since: str) -> str:
    return f"Restarts (last {since})"


def graph_summary(series: int, shown_series: int, since: str) -> str:
    if not series:
        return f"the query returned no data in the last {since}"
    if shown_series < series:
        return (f"{series} series in the last {since}; the first {shown_series} are drawn "
                "(aggregate the query to see all of it)")
    return f"{series} series in the last {since}"


def graph_title(promql: str) -> str:
    return promql if len(promql) <= 80 else promql[:79] + "…"


ALERT_LINK_LABELS = {"grafana": "Grafana", "prometheus": "Prometheus", "runbook": "Runbook"}


def alert_links(links: Sequence[tuple[str, str]]) -> str:
    return " · ".join(f"{label}: {url}" for label, url in links)


def grafana_dashboard() -> str:
    return "Grafana"


def grafana_explore(metric: str) -> str:
    return f"{metric} in Grafana"


def diag_signal_field(signal: str) -> str:
    return SIGNAL_NAMES.get(signal, signal)


def diag_loki_field() -> str:
    return "Error lines (1 h, Loki)"


def diag_loki_failed(error: str) -> str:
    return f"not read: {error}"


def diag_loki_heading(count: int) -> str:
    return f"RECENT ERROR LINES (Loki, newest {count})"


# Locks, reservations, executions, cancel, silences (issue 14 items 4 and 5) -------------------


def target_reserved(target: str, environment: str, holder: str, command: str,
                    request_id: str, since: datetime) -> str:
    return (
        f"{target} in {code(environment)} is reserved: {holder}'s request {code(request_id)} "
        f"to run {code(command)} is awaiting approval since {since:%H:%M:%S} UTC. Nothing was "
        "changed."
    )


def reserved_hint(request_id: str) -> str:
    return (f"Wait until it is approved and run, denied or expired; its requester can "
            f"{code(f'cancel {request_id}')}, an approver {code(f'deny {request_id}')}.")


def unlock_reserved(target: str, environment: str, holder: str, request_id: str) -> str:
    return (f"{target} in {code(environment)} is not locked by a run: it is reserved for "
            f"{holder}'s request {code(request_id)}, awaiting approval; unlock does not end "
            "a reservation")


def unlock_reserved_hint(request_id: str) -> str:
    return (f"The reservation ends with the request: {code(f'cancel {request_id}')} (its "
            f"requester) or {code(f'deny {request_id}')} (an approver).")


def lock_line(*, holder: str, command: str | None, execution_id: str | None,
              request_id: str | None, since: datetime, now: datetime) -> str:
    """`🔒 alice running `deploy ...` (execution ex-...) since 12:25 UTC`, or a reservation."""
    what = code(command) if command else "an earlier command"
    if execution_id is None:
        return (f"📝 reserved for {holder}'s request {code(request_id or '?')} {what}, "
                f"awaiting approval, since {clock_time(since, now)}")
    via = f", request {code(request_id)}" if request_id else ""
    return (f"🔒 {holder} running {what} (execution {code(execution_id)}{via}) since "
            f"{clock_time(since, now)}")


def locks_summary(count: int, environment: str | None = None) -> str:
    where = f" in {code(environment)}" if environment else ""
    if not count:
        return f"No target is locked{where}: nothing is changing an app right now."
    return f"{count} target{'s are' if count != 1 else ' is'} locked{where}."


def execution_line(*, command: str, who: str, environment: str | None, status: str,
                   dry_run: bool, started: datetime, finished: datetime | None, now: datetime,
                   cancel_by: str | None, link: str | None) -> str:
    """`✅ `scale shop-web 3` by alice in staging, done, 12:25 UTC, 14 s` and a link."""
    icon = STATUS_ICON.get(status, "")
    state = {"succeeded": "done"}.get(status, status)
    if status == "running" and cancel_by:
        state = f"running, cancel asked by {cancel_by}"
    took = rough_span((finished or now) - started)
    parts = [f"{icon} {code(command)}{' (dry run)' if dry_run else ''} by {who}",
             f"in {code(environment)}" if environment else "", state,
             f"started {clock_time(started, now)}",
             f"took {took}" if finished else f"for {took}"]
    line = ", ".join(p for p in parts if p)
    return f"{line} · {link}" if link else line


def executions_summary(count: int, *, running: bool, app: str | None,
                       environment: str | None) -> str:
    which = "running execution" if running else "execution"
    scope = "".join([f" of {app}" if app else "",
                     f" in {code(environment)}" if environment else ""])
    if count == 0:
        return f"no {which}s{scope}"
    latest = "" if running else "latest "
    return f"{count} {latest}{which}{'s' if count != 1 else ''}{scope}"


def cancelled_failure(who: str) -> str:
    """What on_failure steps see as `failure` when a run was cancelled."""
    return f"cancelled by {who}"


def cancelled_summary(who: str, cleanup: Sequence[StepView]) -> str:
    parts = [f"cancelled by {who} between steps"]
    for step in cleanup:
        if step.status in ("succeeded", "not_checked"):
            parts.append(f"{step.name}: {step.summary}" if step.summary else f"{step.name}: done")
        else:
            parts.append(f"{step.name} failed: {step.summary}")
    return "; then ".join(parts)


def cancel_asked(execution_id: str, command: str, running_step: str | None) -> str:
    step = f"the running step ({running_step}) finishes" if running_step \
        else "the running step finishes"
    return (f"asked execution {code(execution_id)} ({code(command)}) to cancel: {step}, then "
            "its runbook's on-failure steps run and it ends cancelled")


def cancel_already_asked(execution_id: str, who: str) -> str:
    return f"execution {code(execution_id)} is already being cancelled (asked by {who})"


def cancel_not_running(execution_id: str, status: str) -> str:
    return f"execution {code(execution_id)} is not running (it {status_text(status)}); " \
        "nothing to cancel"


def status_text(status: str) -> str:
    return {"succeeded": "succeeded", "failed": "failed", "refused": "was refused",
            "interrupted": "was interrupted", "cancelled": "was cancelled"}.get(status, status)


def cancel_not_running_hint() -> str:
    return f"{code('executions --running')} lists what is running now."


def cancel_denied(user: str, command: str, environment: str) -> str:
    return (f"{user} may not cancel {code(command)} in {code(environment)}: who started it, "
            "whoever may run that runbook there, and the environment's approvers may")


def silence_line(*, matchers: str, created_by: str, ends: datetime | None, comment: str,
                 state: str, now: datetime) -> str:
    until = f"until {clock_time(ends, now)}" if ends else "no end"
    pending = " (not started yet)" if state == "pending" else ""
    note = f" · {comment}" if comment else ""
    return f"🔕 {matchers} by {created_by} {until}{pending}{note}"


def silences_summary(count: int, app: str | None, environment: str) -> str:
    scope = f" for {app} in {code(environment)}" if app else " in Alertmanager"
    if count == 0:
        return f"no active silences{scope}"
    return f"{count} active silence{'s' if count != 1 else ''}{scope}"


def no_such_silence(silence_id: str) -> str:
    return f"Alertmanager has no silence {code(silence_id)}"


def silence_already_expired(silence_id: str) -> str:
    return f"silence {code(silence_id)} has already ended; nothing to do"


def would_unsilence(silence_id: str) -> str:
    return f"would expire silence {code(silence_id)} now"


def unsilenced(silence_id: str) -> str:
    return f"expired silence {code(silence_id)}: its alerts notify again"


def alert_silence_note(who: str, until: datetime, now: datetime) -> str:
    return f"🔕 silenced by {who} until {clock_time(until, now)}"


def alert_silence_expired_note(who: str, at: datetime, now: datetime) -> str:
    return f"🔔 silence expired by {who} at {clock_time(at, now)}"


def expire_silence_label() -> str:
    return "Expire silence"


# Handlers from other packages and the generic steps (issue 14 item 8) ------------------------

def entry_point_broken(name: str, value: str, dist: str, error: str) -> str:
    return (f"handler entry point {code(name)} ({code(value)}) of distribution {code(dist)} "
            f"failed to import: {error}; fix or uninstall that package")


def entry_point_not_module(name: str, value: str, dist: str) -> str:
    return (f"handler entry point {code(name)} of distribution {code(dist)} names "
            f"{code(value)}, which is not a module; an `opsbot.handlers` entry point names the "
            "module whose `@handler` functions are registered")


def handler_name_clash(name: str, first: str, second: str) -> str:
    return (f"handler {code(name)} is registered twice: by {first} and by {second}; a "
            "package's handlers need names of their own (e.g. `team.action`)")


def handler_list_heading() -> str:
    return "Handlers (runbook steps):"


def would_wait(duration: str) -> str:
    return f"would wait {duration}"


def waiting(duration: str, reason: str) -> str:
    return f"waiting {duration}" + (f": {reason}" if reason else "")


def waited(duration: str) -> str:
    return f"waited {duration}"


def wait_cut_short(duration: str) -> str:
    return f"wait of {duration} ended early: the execution was asked to cancel"


def wait_reason_field() -> str:
    return "Why"


def notify_channel_field() -> str:
    return "Channel"


def would_notify(channel_name: str) -> str:
    return f"would post to {code(channel_name)} (the text is below)"


def notified(channel_name: str) -> str:
    return f"message sent to {code(channel_name)}"


def announcement(text: str, execution_id: str, runbook: str, actor: str) -> str:
    """A `notify` step's message as its channel shows it: the runbook's text, then where it
    came from."""
    return f"{text}\n{italic(f'from {runbook} ({execution_id}), started by {actor}')}"


def announced(channel_name: str, text: str) -> str:
    """How the console shows a message a step sent to a channel."""
    return f"→ {channel_name}: {text}"


def would_http(method: str, url: str) -> str:
    return f"would send {method} {code(url)}"


def http_done(method: str, url: str, status: int) -> str:
    return f"{method} {code(url)} answered {status}; every check passed"


def http_failed(method: str, url: str, status: int, problems: Sequence[str]) -> str:
    return f"{method} {code(url)} answered {status}: " + "; ".join(problems)


def http_unexpected_status(status: int, expected: Sequence[int]) -> str:
    shown = ", ".join(map(str, expected[:5])) + (", …" if len(expected) > 5 else "")
    return f"status {status} is not one expected ({shown})"


def http_check_failed(check: str) -> str:
    return f"check {code(check)} does not hold"


def http_host_not_allowed(host: str) -> str:
    return (f"host {code(shown(host)[:200])} is not on the configured {code('http.allowed_hosts')}"
            "; nothing was sent")


def http_redirect_not_allowed(host: str) -> str:
    return (f"the answer redirects to {code(shown(host)[:200])}, which is not on "
            f"{code('http.allowed_hosts')}; not followed")


def http_bad_redirect(url: str) -> str:
    return f"the answer redirects to {code(url[:200])}, which is not http(s); not followed"


def http_too_many_redirects(count: int) -> str:
    return f"more than {count} redirects; stopped following them"


def http_too_large(limit: int) -> str:
    return f"the answer is larger than {limit} bytes ({code('http.max_response_bytes')})"


def http_timeout(url: str, seconds: float) -> str:
    return f"{code(url)} did not answer within {seconds:g}s"


def http_unreachable(url: str, error: str) -> str:
    return f"{code(url)} could not be reached ({error})"


def http_secret_missing(header: str, variable: str) -> str:
    return f"header {code(header)} comes from {code(variable)}, which is not set"


def http_expect_field() -> str:
    return "Expect status"


def http_headers_field() -> str:
    return "Headers"


def http_body_field() -> str:
    return "Body"


def http_check_field() -> str:
    return "Check"


def promql_query_field() -> str:
    return "Query"


def promql_success_field() -> str:
    return "Success"


def promql_check(reason: str) -> str:
    return f"PromQL check ({reason})"


def promql_no_data(query: str) -> str:
    return f"the query returned no data: {code(query[:300])}"


def promql_result(value: str, success: str, met: bool) -> str:
    return f"{value}: {code(success)} {'holds' if met else 'does not hold'}"


def patch_kind_not_allowed(kind: str, allowed: Sequence[str]) -> str:
    return (f"k8s.patch may not change {kind} objects here ({code('k8s_patch.kinds')}: "
            f"{', '.join(allowed) or 'none'})")


def patch_no_change(target: str) -> str:
    return f"{target} already is as the patch says; nothing to change"


def patch_type_field() -> str:
    return "Patch"


def patch_change(old: str | None, new: str | None) -> str:
    return f"{old if old is not None else '(none)'} → {new if new is not None else '(removed)'}"


def would_patch(target: str, changes: int) -> str:
    return f"would patch {target}: {changes} field{'s' if changes != 1 else ''} change"


def patched(target: str, changes: int) -> str:
    return f"patched {target}: {changes} field{'s' if changes != 1 else ''} changed"


def not_announced(channel_name: str) -> str:
    return (f"A step's message to {code(channel_name)} could not be posted there (invite the "
            "bot to that channel).")


def promql_now(result: str) -> str:
    """A PromQL check in a dry run: what it reads now, before any change."""
    return f"now {result}"


def promql_no_data_yet() -> str:
    return "no data now (a dry run reads before any change)"
