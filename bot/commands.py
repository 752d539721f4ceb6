"""The command language: text after `/ops` (or typed in the console) becomes a parsed command.

Meta-commands (help, runbooks, run) belong to the dispatcher; every other verb is a runbook.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from bot import messages
from bot.errors import UnknownName, UsageError
from bot.markup import code
from bot.names import closest, shown
from bot.runbooks.loader import Catalog
from bot.runbooks.models import Runbook

__all__ = ["META_VERBS", "Command", "parse", "rebuilt"]

META_VERBS = ("help", "runbooks", "run", "approve", "deny", "pending", "cancel")
_REQUEST_VERBS = {"approve": "approve <id> [--confirm 1,2,...]", "deny": "deny <id> [reason]",
                  "cancel": "cancel <request-id|execution-id>"}
_REQUEST_ID = r"rq-[0-9A-Za-z]{4,40}"
_EXECUTION_ID = r"ex-[0-9A-Za-z]{4,40}"  # only `cancel` takes one
_COMMON_VALUE_FLAGS = {"--env": "env", "--reason": "reason", "--emergency": "emergency"}
_COMMON_BOOL_FLAGS = {"--dry-run": "dry_run"}
_BOOLS = {"true", "false", "yes", "no", "on", "off", "1", "0"}


@dataclass(frozen=True)
class Command:
    """A parsed command: a meta verb or a runbook, its raw parameter strings and common flags."""

    text: str
    meta: str | None = None  # "help" | "runbooks" | "run", or None for a runbook verb
    runbook: Runbook | None = None
    raw_params: dict[str, str] = field(default_factory=dict)
    env: str | None = None
    reason: str | None = None
    dry_run: bool = False
    topic: str | None = None  # `help <verb>`
    emergency: str | None = None  # break-glass: the reason to skip approval
    confirmed: tuple[int, ...] | None = None  # `approve --confirm 1,2`: checklist items ticked


def parse(text: str, catalog: Catalog) -> Command:
    text = text.strip()
    if len(text) > 4000:
        raise UsageError("that command is too long")
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"cannot read the command: {exc}", hint="check your quotes") from None
    if not words:
        return Command(text=text, meta="help")
    head = words[0].lower()
    if head == "help":
        return Command(text=text, meta="help", topic=" ".join(words[1:3]) or None)
    if head in ("runbooks", "pending"):
        return Command(text=text, meta=head)
    if head in _REQUEST_VERBS:
        ids = f"{_REQUEST_ID}|{_EXECUTION_ID}" if head == "cancel" else _REQUEST_ID
        if len(words) < 2 or not re.fullmatch(ids, words[1]):
            if head == "cancel":
                raise UsageError("missing or malformed request or execution id",
                                 hint=f"usage: {_REQUEST_VERBS[head]} (ids look like rq-01J... "
                                      "or ex-01J...)")
            raise UsageError("missing or malformed request id",
                             hint=f"usage: {_REQUEST_VERBS[head]} (ids look like rq-01J...)")
        if head == "approve" and len(words) > 2:
            return Command(text=text, meta=head, topic=words[1],
                           confirmed=_confirmed(words[2:]))
        if head != "deny" and len(words) > 2:
            raise UsageError("too many arguments", hint=f"usage: {_REQUEST_VERBS[head]}")
        reason = " ".join(words[2:]) or None
        return Command(text=text, meta=head, topic=words[1], reason=reason)
    if head == "run":
        if len(words) < 2:
            raise UsageError("missing <runbook>", hint="usage: run <runbook> [key=value ...]")
        runbook = catalog.by_name(words[1])
        return _bind(text, runbook, words[2:], allow_keywords=True, meta="run")
    match = catalog.match_verb([w.lower() for w in words])
    if match is None:
        choices = [*catalog.verbs(), *META_VERBS]
        first = [v.split()[0] for v in choices]
        raise UnknownName("command", shown(words[0]), closest(head, set(first) | set(choices)))
    runbook, used = match
    return _bind(text, runbook, words[used:], allow_keywords=False)


def _confirmed(words: list[str]) -> tuple[int, ...]:
    """`--confirm 1,3,2`: the checklist items an approver confirms, by number."""
    usage = f"usage: {_REQUEST_VERBS['approve']} (the numbers of the checklist's items)"
    if len(words) != 2 or words[0] != "--confirm":
        raise UsageError("too many arguments", hint=usage)
    numbers = words[1].split(",")
    if not all(re.fullmatch(r"[0-9]{1,2}", n) and int(n) >= 1 for n in numbers):
        raise UsageError(f"--confirm takes item numbers such as 1,2,3, not {shown(words[1])}",
                         hint=usage)
    items = [int(n) for n in numbers]
    if len(set(items)) != len(items):
        raise UsageError("an item is confirmed twice in --confirm", hint=usage)
    return tuple(sorted(items))


def rebuilt(text: str, *, without: str | None = None) -> str:
    """`text` as single-spaced, quoted words, less the word `without`: how a button repeats a
    command, with no doubled space where a template rendered an optional part empty.
    ValueError when its quotes do not balance."""
    return shlex.join(word for word in shlex.split(text) if word != without)


def _bind(
    text: str, runbook: Runbook, words: list[str], *, allow_keywords: bool, meta: str | None = None
) -> Command:
    flags: dict[str, str] = {}
    for name, spec in runbook.parameters.items():
        flags[f"--{name.replace('_', '-')}"] = name
        if spec.flag:
            flags[spec.flag] = name
    usage = f"usage: {runbook.usage}"
    given: dict[str, str] = {}  # parameter (or common flag) -> how it was first given

    def take(key: str, form: str, what: str) -> None:
        # A value given twice is refused, never silently replaced by the last one: the
        # second `--env` of `scale web 3 --env staging --env prod` is not a detail.
        if key in given:
            raise UsageError(messages.given_twice(given[key], form, what), hint=usage)
        given[key] = form

    positional: list[str] = []
    rest = runbook.command.rest if runbook.command and not allow_keywords else None
    labels: list[str] = []
    raw: dict[str, str] = {}
    common: dict[str, str] = {}
    dry_run = False
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("--") and len(word) > 2:
            name, eq, inline = word.partition("=")
            if name in _COMMON_BOOL_FLAGS:
                if eq:
                    raise UsageError(messages.flag_takes_no_value(name), hint=usage)
                take(name, name, name)
                dry_run = True
            elif name in _COMMON_VALUE_FLAGS or name in flags:
                is_switch = name in flags and runbook.parameters[flags[name]].type == "bool"
                if eq and not inline:  # `--env=` must not quietly mean the default environment
                    raise UsageError(f"{name} needs a value", hint=usage)
                if eq:
                    value = inline
                elif is_switch and (i + 1 >= len(words) or words[i + 1].lower() not in _BOOLS):
                    value = "true"  # a bool flag alone switches it on: --disable-autosync
                elif i + 1 < len(words):
                    i += 1
                    value = words[i]
                else:
                    raise UsageError(f"{name} needs a value", hint=usage)
                if name in _COMMON_VALUE_FLAGS:
                    take(name, name, name)
                    common[_COMMON_VALUE_FLAGS[name]] = value
                else:
                    take(flags[name], name, f"<{flags[name]}>")
                    raw[flags[name]] = value
            else:
                known = [*flags, *_COMMON_VALUE_FLAGS, *_COMMON_BOOL_FLAGS]
                raise UnknownName("option", shown(name), closest(name, known))
        elif allow_keywords and "=" in word and not word.startswith("="):
            key, _, value = word.partition("=")
            take(key, f"{shown(key)}=", f"<{shown(key)}>")
            raw[key] = value
        elif rest and "=" in word:
            labels.append(word)
        else:
            positional.append(word)
        i += 1
    args = runbook.command.args if runbook.command else []
    if len(positional) > len(args):
        raise UsageError(f"too many arguments: {code(shown(positional[len(args)]))}", hint=usage)
    for name, value in zip(args, positional, strict=False):
        take(name, f"<{name}>", f"<{name}>")
        raw[name] = value
    if rest and labels:
        take(rest, "label=value words", f"<{rest}>")
        raw[rest] = "\n".join(labels)
    return Command(
        text=text,
        meta=meta,
        runbook=runbook,
        raw_params=raw,
        env=common.get("env"),
        reason=common.get("reason"),
        dry_run=dry_run,
        emergency=common.get("emergency"),
    )
