"""Alertmanager's label matchers (`name="value"`, `=~`, `!=`, `!~`), as runbooks declare them.

Semantics follow Alertmanager and Prometheus: a missing label has the empty value, regular
expressions are anchored at both ends (RE2 there, Python `re` here: the common subset of both
is what runbooks should use), and values may be quoted with the usual escapes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from bot.markup import code
from bot.prometheus import promql_string

__all__ = ["Matcher", "MatcherError", "matches_all", "parse_matcher"]

Op = Literal["=", "!=", "=~", "!~"]
_SYNTAX = re.compile(r'^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$', re.DOTALL)
_MAX_VALUE = 1000


class MatcherError(ValueError):
    """A matcher that does not parse; the message says why."""


@dataclass(frozen=True)
class Matcher:
    name: str
    op: Op
    value: str

    def __post_init__(self) -> None:
        if self.op in ("=~", "!~"):
            try:
                object.__setattr__(self, "_regex", re.compile(self.value, re.DOTALL))
            except re.error as exc:
                raise MatcherError(
                    f"{code(self.value)} is not a regular expression: {exc}") from None

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.name, "")
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        regex: re.Pattern[str] = getattr(self, "_regex")  # noqa: B009 - set in __post_init__
        found = regex.fullmatch(value) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        return f"{self.name}{self.op}{promql_string(self.value)}"


def parse_matcher(text: str) -> Matcher:
    """`severity=~"warning|critical"` (quotes optional for simple values) as a Matcher."""
    match = _SYNTAX.match(text)
    if not match:
        raise MatcherError(
            f"{code(text[:80])} is not a matcher; write e.g. alertname=\"KubePodCrashLooping\" "
            "with =, !=, =~ or !~"
        )
    name, op, raw = match.groups()
    if len(raw) > _MAX_VALUE:
        raise MatcherError(f"the value of matcher {code(name)} is too long")
    return Matcher(name, op, _unquote(raw))  # type: ignore[arg-type]


def matches_all(matchers: Sequence[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        body, out, i = raw[1:-1], [], 0
        while i < len(body):
            ch = body[i]
            if ch == "\\" and i + 1 < len(body):
                nxt = body[i + 1]
                out.append({"n": "\n", "t": "\t"}.get(nxt, nxt))
                i += 2
                continue
            if ch == '"':
                raise MatcherError(f"unescaped quote in {raw[:80]}")
            out.append(ch)
            i += 1
        return "".join(out)
    if '"' in raw:
        raise MatcherError(f"unbalanced quotes in {raw[:80]}")
    return raw
