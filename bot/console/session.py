"""The console front end: `run` (one command), `shell` (interactive) and demo scripts.

Console input becomes a Trigger like any Slack command and goes through the same dispatcher.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from datetime import timedelta
from typing import Protocol, TypeVar

from bot import messages
from bot.console.live import LiveOutput
from bot.console.reporter import ConsoleReporter
from bot.dispatcher import Outcome
from bot.errors import UnknownName, UsageError
from bot.markup import plain
from bot.numbers import parse_duration
from bot.services import Services
from bot.trigger import Trigger

__all__ = [
    "EXIT_CODES", "AlertWaiter", "as_suffix", "exit_code", "run_command", "run_script", "shell",
    "with_background",
]

T = TypeVar("T")

EXIT_CODES = {
    "succeeded": 0,
    "info": 0,
    "duplicate": 0,
    "failed": 1,
    "refused": 1,
    "cancelled": 1,
    "denied": 1,
    "usage": 2,
    "pending_approval": 3,
}
_SCRIPT_LINE = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*:\s*(.*)$")
# `approve rq-1 --as bob` in the shell or a script: the same flag `opsbot run` takes.
_AS_SUFFIX = re.compile(r"^(.*?)\s+--as(?:\s+|=)([A-Za-z0-9_.-]+)\s*$")
# A demo script waiting for what a person would wait for: `wait alert NAME [firing|resolved]
# [--within DURATION]`, a bounded wait until the console has shown that alert so.
_WAIT_LINE = re.compile(r"^\s*wait(\s.*)?$")
_WAIT_ALERT = re.compile(
    r"^\s+alert\s+(\S+)(?:\s+(firing|resolved))?(?:\s+--within(?:\s+|=)(\S+))?\s*$")
WAIT_SECONDS = 60.0


class AlertWaiter(Protocol):
    """Where alert messages are shown (the console's alert board)."""

    def showing(self, alertname: str, status: str = "firing") -> bool: ...

    async def wait_shown(self, alertname: str, status: str = "firing",
                         timeout: float = WAIT_SECONDS) -> bool: ...


def exit_code(outcome: Outcome) -> int:
    return EXIT_CODES[outcome.status]


async def run_command(
    services: Services, text: str, user: str, write: Callable[[str], None] = print
) -> Outcome:
    """One console command as `user` (handle or id), printed through the console reporter;
    a trailing `--as OTHER` in `text` runs it as OTHER instead."""
    text, user = as_suffix(text, user)
    try:
        actor = services.settings.user_id(user)
    except UnknownName as exc:
        write(f"❌ {plain(str(exc))}")
        return Outcome("usage")
    trigger = Trigger(source="console", actor=actor, text=text)
    outcome = await services.dispatcher.dispatch(trigger, ConsoleReporter(write))
    if outcome.status == "pending_approval" and outcome.request_id:
        write(f"request-id: {outcome.request_id}")
    return outcome


async def run_script(
    services: Services,
    lines: Iterable[str],
    write: Callable[[str], None] = print,
    *,
    live: LiveOutput | None = None,
    alerts: AlertWaiter | None = None,
) -> int:
    """Run `USER: command` lines, echoing each; returns 1 if a line could not be read or a
    `wait` ran out of time. With `live`, background output is printed between commands;
    `alerts` is what `wait alert` lines wait on (None: alerts are off, they are skipped)."""
    last_request: str | None = None
    status = 0
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _SCRIPT_LINE.match(line)
        if not match and (wait := _WAIT_LINE.match(line)):
            if not await _wait(number, wait.group(1) or "", alerts, write):
                status = 1
            continue
        if not match:
            write(f"❌ line {number}: expected `USER: command`, got `{line}`")
            status = 1
            continue
        user, text = match.groups()
        if "{last_request}" in text:
            if last_request is None:
                write(f"❌ line {number}: {{last_request}} used before any approval request")
                status = 1
                continue
            text = text.replace("{last_request}", last_request)
        write("")
        write(f"{user}> {text}")
        with _command(live):
            outcome = await run_command(services, text, user, write)
        if outcome.request_id:  # the newest approval request this script has touched
            last_request = outcome.request_id
    return status


async def shell(
    services: Services,
    user: str,
    *,
    read: Callable[[str], str] = input,
    write: Callable[[str], None] = print,
    live: LiveOutput | None = None,
) -> int:
    """Interactive console. `as bob` switches user; `bob: text` runs one line as bob. With
    `live`, the prompt is read in a thread and background output is shown as it arrives."""
    write(f"opsbot shell as {user}; type `help`, `as USER` to switch user, `USER: command` or "
          "`command --as USER` for one line, `quit` to leave.")
    while True:
        try:
            prompt = f"{user}> "
            line = (await live.read(read, prompt) if live else read(prompt)).strip()
        except (EOFError, KeyboardInterrupt):
            write("")
            return 0
        if line in ("quit", "exit"):
            return 0
        if not line:
            continue
        if line.startswith("as "):
            candidate = line[3:].strip()
            try:
                services.settings.user_id(candidate)
                user = candidate
            except UnknownName as exc:
                write(f"❌ {plain(str(exc))}")
            continue
        match = _SCRIPT_LINE.match(line)
        with _command(live):
            if match and _known_user(services, match.group(1)):
                await run_command(services, match.group(2), match.group(1), write)
            else:
                await run_command(services, line, user, write)


def as_suffix(text: str, user: str) -> tuple[str, str]:
    """Split a trailing `--as USER` off `text`: (command text, who runs it)."""
    match = _AS_SUFFIX.match(text)
    return (match.group(1), match.group(2)) if match else (text, user)


def _command(live: LiveOutput | None) -> AbstractContextManager[None]:
    return live.command() if live else nullcontext()


async def _wait(number: int, rest: str, alerts: AlertWaiter | None,
                write: Callable[[str], None]) -> bool:
    """One `wait` line of a script; False when it is malformed or its time ran out."""
    match = _WAIT_ALERT.match(rest)
    seconds = WAIT_SECONDS
    if match and match.group(3):
        try:
            seconds = parse_duration(match.group(3), longest=timedelta(hours=1),
                                     what="the wait").total_seconds()
        except UsageError:
            match = None
    if not match or not seconds:
        write(plain(messages.script_bad_wait(number, f"wait{rest}")))
        return False
    alertname, state = match.group(1), match.group(2) or "firing"
    write("")
    if alerts is None:
        write(plain(messages.script_wait_skipped(number, alertname)))
        return True
    if alerts.showing(alertname, state):
        write(plain(messages.script_already_shown(alertname, state)))
        return True
    write(plain(messages.script_waiting(alertname, state, seconds)))
    if await alerts.wait_shown(alertname, state, seconds):
        return True
    write(plain(messages.script_wait_timed_out(number, alertname, state, seconds)))
    return False


def _known_user(services: Services, name: str) -> bool:
    try:
        services.settings.user_id(name)
        return True
    except UnknownName:
        return False


async def with_background(services: Services, work: Awaitable[T], *, alerts: bool = False) -> T:
    """Run console work with the process's background services (the scheduler, and with
    `alerts` the alert worker) around it."""
    await services.start(alerts=alerts)
    try:
        return await work
    finally:
        await services.stop()
