"""Text from outside that the store cannot keep: NUL characters and lone UTF-16 surrogates.

PostgreSQL refuses both (and SQLite's driver the surrogates), so every front end refuses them
up front, with the same answer on either database, instead of failing when the store writes.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from bot.trigger import Trigger

__all__ = ["Unstorable", "json_may_hold_unstorable", "unstorable", "unstorable_trigger"]

#: Why a text was refused; also the `reason` label of the metrics that count refusals.
Unstorable = Literal["nul_character", "lone_surrogate"]

_SURROGATE = re.compile("[\ud800-\udfff]")
# How either can reach a string parsed from JSON bytes: a `\u0000` or `\uD800`-`\uDFFF` escape,
# or a surrogate's own bytes (ED A0-BF: `json.loads` decodes bytes with surrogatepass). A raw
# NUL is not valid JSON text, but is looked for all the same.
_UNSTORABLE_JSON = re.compile(rb"\\u0000|\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]|\x00")


def unstorable(value: object) -> Unstorable | None:
    """What in `value` (a string, or JSON-like dicts and lists holding strings, keys included)
    the store would refuse; None when every character can be stored."""
    stack = [value]
    while stack:  # not recursive: a deeply nested body must not exhaust the stack
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "nul_character"
            if not item.isascii() and _SURROGATE.search(item):
                return "lone_surrogate"
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return None


def json_may_hold_unstorable(body: bytes) -> bool:
    """False when nothing parsed from the JSON `body` can be unstorable: one scan of the bytes
    spares walking every string of a large payload. True means look (`unstorable`)."""
    if b"\\u" not in body and b"\x00" not in body and b"\xed" not in body:
        return False  # most bodies: three byte searches, not the pattern's four branches
    return _UNSTORABLE_JSON.search(body) is not None


def unstorable_trigger(trigger: Trigger) -> Unstorable | None:
    """What in a trigger's outside text (typed text, button value or form input, who, where,
    the delivery key) the store would refuse; front ends' triggers are checked here before
    anything of them is stored."""
    return unstorable([trigger.text, trigger.actor, trigger.channel, trigger.delivery_id])
