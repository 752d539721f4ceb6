"""Numbers and durations as people and alerts write them: ASCII digits only, within stated limits.

Python's `int()` also takes `٣`, `５`, `1_000`, `+3` and ` 3 `, and `\\d` matches every script's
digits; none of that is a number in opsbot's command language.
"""

from __future__ import annotations

import re
from datetime import timedelta

from bot import messages
from bot.errors import UsageError

__all__ = [
    "LONGEST",
    "duration_text",
    "is_digits",
    "parse_duration",
    "whole_number",
]

# The longest duration anything in opsbot takes (a backup's TTL is the longest in use); a
# parameter, a handler or a configuration value may allow less, never more.
LONGEST = timedelta(days=3650)

_DIGITS = re.compile(r"[0-9]+")
_NUMBER = re.compile(r"-?[0-9]+")
_DURATION = re.compile(r"(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")
# More digits than this is past any limit, and int() is never asked to read a wall of them.
_MAX_DIGITS = 18
_UNIT_SECONDS = (86400, 3600, 60, 1)


def is_digits(text: str) -> bool:
    """True for one or more ASCII digits and nothing else (`str.isdigit` also takes `٣`, `²`)."""
    return _DIGITS.fullmatch(text) is not None


def whole_number(text: str, *, what: str, hint: str | None = None) -> int:
    """An optional `-` and ASCII digits as an int, else a UsageError naming `what`."""
    if not _NUMBER.fullmatch(text):
        raise UsageError(messages.not_a_whole_number(what, text), hint=hint)
    if len(text.lstrip("-")) > _MAX_DIGITS:
        raise UsageError(messages.number_too_large(what), hint=hint)
    return int(text)


def parse_duration(
    text: str,
    *,
    shortest: timedelta | None = None,
    longest: timedelta = LONGEST,
    what: str = "the duration",
    hint: str | None = None,
) -> timedelta:
    """`90s`, `30m`, `2h`, `1d12h` -> timedelta, between `shortest` and `longest` (at most
    LONGEST); anything else is a UsageError that says the limit."""
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        raise UsageError(messages.not_a_duration(text), hint=messages.duration_hint())
    longest = min(longest, LONGEST)
    groups = [group or "0" for group in match.groups()]
    too_long = UsageError(messages.duration_too_long(what, text, duration_text(longest)),
                          hint=hint)
    if any(len(group) > _MAX_DIGITS for group in groups):
        raise too_long
    seconds = sum(int(group) * unit for group, unit in zip(groups, _UNIT_SECONDS, strict=True))
    # Compared as whole seconds before a timedelta exists: timedelta(days=10**11) overflows.
    if seconds > longest.total_seconds():
        raise too_long
    if shortest is not None and seconds < shortest.total_seconds():
        raise UsageError(messages.duration_too_short(what, text, duration_text(shortest)),
                         hint=hint)
    return timedelta(seconds=seconds)


def duration_text(length: timedelta) -> str:
    """`1h`, `1d12h`, `1m30s`: a duration as the command language writes it."""
    seconds = int(length.total_seconds())
    parts = []
    for unit, size in zip("dhms", _UNIT_SECONDS, strict=True):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"
