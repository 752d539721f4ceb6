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
import unicodedata
from typing import Literal

__all__ = [
    "ELLIPSIS", "Span", "Style", "bold", "channel", "clean", "clip", "code", "head", "italic",
    "plain", "spans", "units",
]

ELLIPSIS = "…"

Style = Literal["bold", "code", "italic", "channel"]
Span = tuple[Style | None, str]  # (style, what the console shows), None for literal text

_OPEN = {"bold": "\ue000", "code": "\ue002", "italic": "\ue004", "channel": "\ue006"}
_CLOSE = {"bold": "\ue001", "code": "\ue003", "italic": "\ue005", "channel": "\ue007"}
_DELIMITERS = "".join(_OPEN.values()) + "".join(_CLOSE.values())
_STYLE_OF = {mark: style for style, mark in _OPEN.items()}
_DROP = str.maketrans("", "", _DELIMITERS)
_SPAN = re.compile(
    "|".join(f"{_OPEN[s]}([^{_DELIMITERS}]*){_CLOSE[s]}" for s in _OPEN)
)
_STYLES: tuple[Style, ...] = ("bold", "code", "italic", "channel")
_JOINERS = frozenset("\u200d\ufe0e\ufe0f")  # ZWJ and variation selectors bind to neighbours


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


def head(text: str, count: int) -> str:
    """The start of the text showing at most `count` characters, its spans still well formed
    (a span cut short is closed; a cut code span keeps its closing backtick)."""
    if len(text) <= count:
        return text
    shown = 0
    end = len(text)
    last_mark = -1
    for i, char in enumerate(text):
        if char in _DELIMITERS:
            last_mark = i
        else:
            shown += 1
            if shown > count:
                end = i
                break
    start = text[:end]
    style = _STYLE_OF.get(text[last_mark]) if 0 <= last_mark < end else None
    if style is None:
        return start
    if style == "code" and not start.endswith("`"):
        start += "`"
    return start + _CLOSE[style]


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


def units(text: str) -> int:
    """The length as Slack counts it for its limits (UTF-16 code units), never less than len."""
    return len(text) if text.isascii() else len(text.encode("utf-16-le", "surrogatepass")) // 2


def joined(before: str, after: str) -> bool:
    """Whether a cut between these two characters would split what shows as one."""
    return bool(before in _JOINERS or after in _JOINERS
                or (after and unicodedata.combining(after)))


def clip(text: str, limit: int) -> str:
    """A value of at most `limit` units: cut between characters (never inside a surrogate
    pair, before a combining mark or around a joiner) and ended with `…`."""
    if units(text) <= limit:
        return text
    budget = limit - units(ELLIPSIS)
    end = used = 0
    for i, char in enumerate(text):
        used += units(char)
        if used > budget:
            break
        if not joined(char, text[i + 1] if i + 1 < len(text) else ""):
            end = i + 1
    return text[:end] + ELLIPSIS
