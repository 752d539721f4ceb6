"""Slack mrkdwn from marked text (`bot/markup.py`): our spans become formatting, every other
character shows as typed, and long texts are cut or spread over blocks without breaking either.

mrkdwn has no backslash escape. `&`, `<` and `>` become entities, so nothing can mention, link
or open a token. A `*`, `_` or `~` that could start or end formatting, a backtick, and the colon
that opens an emoji shortcode become the fallback of a date token with an invalid format
(`<!date^00000000^{_}|*>`): Slack shows the fallback as plain text and copies it as typed.
A `*`, `_` or `~` between two letters or digits is left alone, since Slack only formats at word
breaks. A `>` opening a line gets an invisible soft hyphen first, so it cannot start a quote.
This is the escape jsx-slack uses (docs/about-escape-and-exact-mode.md in yhatt/jsx-slack).

Lengths are counted in UTF-16 code units, never less than Slack's count, and texts are cut only
between characters (never inside a surrogate pair, an entity, a token or before a combining
mark) with open formatting closed, and marked with `…`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Literal, NamedTuple

from bot.markup import ELLIPSIS, Span, head, joined, spans, units

__all__ = ["Chunk", "chunks", "fit", "mrkdwn"]

_NEUTRAL = "<!date^00000000^{{_}}|{}>"
_FORMATTING = frozenset("*_~")
_SHORTCODE = re.compile(r":[^\s:]+:")
_CHANNEL = re.compile(r"#([A-Z0-9]{2,40})")
_DELIMITER = {"bold": "*", "italic": "_", "code": "`"}


class _Token(NamedTuple):
    # A tuple, not a frozen dataclass: a message makes one per character, and a tuple is made
    # in a fraction of the time (alert messages re-rendered in a storm spent most of theirs
    # here).
    text: str  # as sent to Slack
    kind: Literal["char", "open", "close"]
    source: str = ""  # the character shown (for char tokens)


Line = tuple[_Token, ...]


def _neutral(char: str) -> str:
    return _NEUTRAL.format(char)


#: Characters `_literal` may show otherwise than as typed.
_SPECIAL = _FORMATTING | frozenset("&<>`:")
#: The token of a character shown as typed, made once (tokens are immutable).
_PLAIN: dict[str, _Token] = {}
_PLAIN_MOST = 4096


def _plain(char: str) -> _Token:
    token = _PLAIN.get(char)
    if token is None:
        token = _Token(char, "char", char)
        if len(_PLAIN) < _PLAIN_MOST:
            _PLAIN[char] = token
    return token


def _literal(text: str, blank: bool) -> list[_Token]:
    """Characters that show as typed; `blank`: nothing but spaces precede them on their line."""
    if _SPECIAL.isdisjoint(text):
        return [_plain(char) for char in text]
    tokens = []
    for i, char in enumerate(text):
        if char == "&":
            shown = "&amp;"
        elif char == "<":
            shown = "&lt;"
        elif char == ">":
            shown = "\u00ad&gt;" if blank else "&gt;"
        elif char in _FORMATTING:
            before = text[i - 1] if i else ""
            after = text[i + 1] if i + 1 < len(text) else ""
            shown = char if before.isalnum() and after.isalnum() else _neutral(char)
        elif char == "`" or (char == ":" and _SHORTCODE.match(text, i)):
            shown = _neutral(char)
        else:
            shown = char
        blank = blank and char.isspace()
        tokens.append(_plain(char) if shown == char else _Token(shown, "char", char))
    return tokens


def _code(text: str) -> list[_Token]:
    """Inside a code span nothing formats; only Slack's three control characters are escaped."""
    entities = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
    return [_Token(entities.get(char, char), "char", char) for char in text]


def _render_line(line: list[Span]) -> Line:
    tokens: list[_Token] = []
    for style, content in line:
        blank = all(t.kind == "char" and t.source.isspace() for t in tokens)
        if style in ("bold", "italic"):
            core = content.strip()
            if not core:
                tokens += _literal(content, blank)
                continue
            lead, trail = content[: content.index(core)], content[content.index(core) + len(core):]
            mark = _DELIMITER[style]
            tokens += _literal(lead, blank)
            tokens += [_Token(mark, "open"), *_literal(core, False), _Token(mark, "close")]
            tokens += _literal(trail, False)
        elif style == "code":
            inner = content[1:-1] if len(content) > 2 and content[0] == content[-1] == "`" else ""
            if inner and "`" not in inner:
                tokens += [_Token("`", "open"), *_code(inner), _Token("`", "close")]
            else:  # a backtick cannot be inside a code span: show the text as typed instead
                tokens += _literal(content, blank)
        elif style == "channel" and (match := _CHANNEL.fullmatch(content)):
            tokens.append(_Token(f"<#{match.group(1)}>", "char", content))
        else:
            tokens += _literal(content, blank)
    return tuple(tokens)


@functools.lru_cache(maxsize=32)
def _lines(text: str) -> tuple[Line, ...]:
    """The text's lines, rendered (kept for the few texts rendered last: a message's texts are
    measured, then laid out)."""
    lines: list[list[Span]] = [[]]
    for style, content in spans(text):
        first, *rest = content.split("\n")
        lines[-1].append((style, first))
        for part in rest:
            lines.append([(style, part)])
    return tuple(_render_line(line) for line in lines)


def _text(line: Line) -> str:
    return "".join(token.text for token in line)


def _open_at(line: Line, end: int) -> _Token | None:
    """The span still open after the first `end` tokens."""
    opened = None
    for token in line[:end]:
        if token.kind == "open":
            opened = token
        elif token.kind == "close":
            opened = None
    return opened


def _breakable(line: Line, end: int, opened: _Token | None) -> bool:
    """Whether the line may be cut after `end` tokens (`opened`: the span open there): not
    just after an opening delimiter, not before a closing one, not inside a character
    sequence, not after a space inside a span (Slack would not close it there)."""
    if end <= 0 or end >= len(line):
        return end > 0
    before, after = line[end - 1], line[end]
    if before.kind == "open" or after.kind == "close":
        return False
    if joined(before.source[-1:], after.source[:1]):
        return False
    return not (before.source.isspace() and opened is not None)


def _cut(line: Line, budget: int) -> int:
    """How many tokens of `line` fit in `budget` units with the open span closed (0: none)."""
    size = 0
    best = 0
    opened: _Token | None = None
    for end in range(1, len(line) + 1):
        token = line[end - 1]
        size += units(token.text)
        if token.kind == "open":
            opened = token
        elif token.kind == "close":
            opened = None
        closing = units(opened.text) if opened is not None and end < len(line) else 0
        if size + closing > budget:
            break
        if _breakable(line, end, opened):
            best = end
    return best


def _closing(line: Line, end: int) -> Line:
    """The closing delimiter a line cut after `end` tokens needs, if any."""
    opened = _open_at(line, end) if end < len(line) else None
    return (_Token(opened.text, "close"),) if opened is not None else ()


def _rest(line: Line, end: int) -> Line:
    opened = _open_at(line, end)
    return ((opened,) if opened is not None else ()) + line[end:]


@dataclass(frozen=True)
class Chunk:
    """Whole rendered lines (the last may be part of a longer one) that fit one text object."""

    lines: tuple[Line, ...]

    @property
    def text(self) -> str:
        return "\n".join(_text(line) for line in self.lines)

    def shortened(self, limit: int) -> str:
        """The chunk within `limit` units: whole lines, then as much of the next as fits, then
        `…`. Just `…` when not even that fits."""
        if units(self.text) <= limit:
            return self.text
        budget = limit - units(ELLIPSIS)
        kept: list[str] = []
        used = 0
        for line in self.lines:
            sep = 1 if kept else 0
            if used + sep + units(_text(line)) <= budget:
                kept.append(_text(line))
                used += sep + units(_text(line))
                continue
            end = _cut(line, budget - used - sep)
            if end:
                kept.append(_text(line[:end] + _closing(line, end)))
            break
        return "\n".join(kept) + ELLIPSIS


def chunks(text: str, limit: int, upto: int | None = None) -> list[Chunk]:
    """The rendered text in pieces of at most `limit` units, cut at line ends where lines allow
    (a longer line continues in the next piece, its formatting reopened). Blank text: none.
    With `upto`, only the start of the text that can show in that many units is rendered."""
    if upto is not None:
        text = head(text, upto + 1)
    pieces: list[Chunk] = []
    current: list[Line] = []
    used = 0
    for line in _lines(text):
        while units(_text(line)) > limit:
            sep = 1 if current else 0
            end = _cut(line, limit - used - sep)
            if not end:
                if current:
                    pieces.append(Chunk(tuple(current)))
                    current, used = [], 0
                    continue
                end = 1  # a single token wider than the limit: let the limit check refuse it
            pieces.append(Chunk((*current, tuple(line[:end]) + _closing(line, end))))
            current, used = [], 0
            line = _rest(line, end)
        size = units(_text(line))
        if current and used + 1 + size > limit:
            pieces.append(Chunk(tuple(current)))
            current, used = [], 0
        used += (1 if current else 0) + size
        current.append(line)
    if current and any(_text(line).strip() for line in current):
        pieces.append(Chunk(tuple(current)))
    return [p for p in pieces if p.text.strip()]


def mrkdwn(text: str) -> str:
    """The whole text as mrkdwn, however long."""
    return "\n".join(_text(line) for line in _lines(text))


def fit(text: str, limit: int) -> str:
    """The text as mrkdwn within `limit` units, cut with `…` if it must be."""
    # Every character shown takes a unit at least: what is past `limit` of them cannot show.
    return Chunk(tuple(_lines(head(text, limit + 1)))).shortened(limit)
