"""The errors opsbot raises, so callers catch our tree and never a library's.

    OpsbotError
    ├── UsageError            the command text is wrong (unknown verb, bad argument)
    │   └── UnknownName       an unknown verb, app, environment or runbook, with suggestions
    ├── ConfigError           opsbot.yaml or the environment is invalid
    ├── RunbookError          a runbook file is invalid (carries file:line)
    ├── Denied                the actor may not do this here (names the missing role)
    ├── Refused               a policy refuses the command (approval needed, bounds, no-op)
    └── HandlerError          a step failed
        ├── PermanentError    retrying will not help
        │   └── NotFound      the object does not exist
        └── RetryableError    a transient fault; `delay` says when a retry may succeed

Foreign exceptions are re-raised as one of these with `from exc`.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.markup import code, plain

__all__ = [
    "ConfigError",
    "Denied",
    "HandlerError",
    "NotFound",
    "OpsbotError",
    "PermanentError",
    "Refused",
    "RetryableError",
    "RunbookError",
    "UnknownName",
    "UsageError",
]


class OpsbotError(Exception):
    """Base of every error opsbot raises on purpose; its text is fit for the user."""


class UsageError(OpsbotError):
    """The command text cannot be understood; `hint` says how to write it."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class UnknownName(UsageError):
    """An unknown verb, app, environment or runbook; carries close matches."""

    def __init__(self, kind: str, name: str, suggestions: Sequence[str] = ()) -> None:
        from bot.names import shown  # names imports this module

        self.kind = kind
        self.name = name
        self.suggestions = list(suggestions)
        text = f"unknown {kind} {code(shown(name))}"
        if self.suggestions:
            text += ": did you mean " + " or ".join(code(s) for s in self.suggestions) + "?"
        super().__init__(text)


class ConfigError(OpsbotError):
    """The configuration (file or environment variables) is invalid. Operators read it on a
    terminal or in a log, so our markup is dropped (values stay as they came)."""

    def __init__(self, message: str) -> None:
        super().__init__(plain(message))


class RunbookError(OpsbotError):
    """A runbook file is invalid; each problem names its file and line."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = [plain(problem) for problem in problems]  # for terminals, as above
        super().__init__("\n".join(self.problems))


class Denied(OpsbotError):
    """The actor lacks a role for this runbook, environment or channel; `hint` says what to do
    instead (the default hint is about roles)."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class Refused(OpsbotError):
    """A policy refuses the command; nothing was changed. `hint` says what to do instead."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class HandlerError(OpsbotError):
    """A handler step failed."""


class PermanentError(HandlerError):
    """A failure that a retry will not fix (not found, invalid, forbidden)."""


class NotFound(PermanentError):
    """The Kubernetes object (or other resource) does not exist."""


class RetryableError(HandlerError):
    """A transient failure (timeout, 5xx, conflict); may succeed after `delay` seconds."""

    def __init__(self, message: str, *, delay: float = 1.0) -> None:
        super().__init__(message)
        self.delay = delay
