"""The markup opsbot writes, kept apart from the values it shows (names, commands, reasons,
alert labels, cluster text), so each front end can format ours and show theirs literally.

Everything in a message is literal text except spans made with these helpers. A span is
delimited by private-use characters (U+E000..U+E007) around what the console prints, so
`plain()` only has to drop the delimiters, and Slack's renderer (`bot/slack/mrkdwn.py`) can tell
our bold from a `*` someone typed:

    bold("staging")      → \\uE000staging\\uE001          console: staging
    code("0 3 * * *")    → \\uE002`0 3 * * *`\\uE003      console: `0 3 * * *`
    italic("[built-in]") → \\uE004[built-in]\\uE005       console: [built-in]
    channel("C0OPS")     → \\uE006#C0OPS\\uE007           console: #C0OPS

Values put into a span lose any delimiter characters of their own, so a value cannot open or
close one; a delimiter left unpaired (say, by cutting a stored summary short) is ignored.
"""

from __future__ import annotations

import re
from typing import Literal

__all__ = ["Span", "Style", "bold", "channel", "clean", "code", "italic", "plain", "spans"]

Style = Literal["bold", "code", "italic", "channel"]
Span = tuple[Style | None, str]  # (style, what the console shows), None for literal text

_OPEN = {"bold": "\ue000", "code": "\ue002", "italic": "\ue004", "channel": "\ue006"}
_CLOSE = {"bold": "\ue001", "code": "\ue003", "italic": "\ue005", "channel": "\ue007"}
_DELIMITERS = "".join(_OPEN.values()) + "".join(_CLOSE.values())
_DROP = str.maketrans("", "", _DELIMITERS)
_SPAN = re.compile(
    "|".join(f"{_OPEN[s]}([^{_DELIMITERS}]*){_CLOSE[s]}" for s in _OPEN)
)
_STYLES: tuple[Style, ...] = ("bold", "code", "italic", "channel")


def clean(value: object) -> str:
    """The value as text without markup delimiters, so it cannot open or close a span."""
    return str(value).translate(_DROP)


def bold(text: object) -> str:
    return f"{_OPEN['bold']}{clean(text)}{_CLOSE['bold']}"


def code(text: object) -> str:
    """Monospace in Slack; between backticks in the console."""
    return f"{_OPEN['code']}`{clean(text)}`{_CLOSE['code']}"


def italic(text: object) -> str:
    return f"{_OPEN['italic']}{clean(text)}{_CLOSE['italic']}"


def channel(channel_id: str) -> str:
    """A link to a Slack channel (by id); `#C0OPS` in the console."""
    return f"{_OPEN['channel']}#{clean(channel_id)}{_CLOSE['channel']}"


def plain(text: str) -> str:
    """What the console shows: the text without its markup delimiters."""
    return text.translate(_DROP)


def spans(text: str) -> list[Span]:
    """The text as literal runs and styled spans, in order; each span's text is what the
    console shows of it (a code span keeps its backticks, a channel its `#`)."""
    found: list[Span] = []
    at = 0
    for match in _SPAN.finditer(text):
        if match.start() > at:
            found.append((None, plain(text[at:match.start()])))
        index = next(i for i, group in enumerate(match.groups()) if group is not None)
        found.append((_STYLES[index], match.group(index + 1)))
        at = match.end()
    if at < len(text):
        found.append((None, plain(text[at:])))
    return [(style, content) for style, content in found if content or style]
