"""What the generic steps share: turning a bad value into the ValueError pydantic reports at
runbook load, and checking a success expression's syntax before anything runs."""

from __future__ import annotations

from bot.runbooks.templating import check_syntax

__all__ = ["expression"]


def expression(text: str, *, what: str) -> str:
    """`text` when it is a valid expression (`result < 0.01`), else a ValueError."""
    if not text.strip():
        raise ValueError(f"{what} is empty")
    if problem := check_syntax("{{ " + text + " }}"):
        raise ValueError(f"{what} `{text}` is not a valid expression: {problem}")
    return text
