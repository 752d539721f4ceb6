"""Text from outside that the store cannot keep: NUL characters and lone UTF-16 surrogates.

PostgreSQL refuses both (and SQLite's driver the surrogates), so every front end refuses them
up front, with the same answer on either database, instead of failing when the store writes.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from bot.trigger import Trigger

__all__ = ["Unstorable", "unstorable", "unstorable_trigger"]

#: Why a text was refused; also the `reason` label of the metrics that count refusals.
Unstorable = Literal["nul_character", "lone_surrogate"]

_SURROGATE = re.compile("[\ud800-\udfff]")


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


def unstorable_trigger(trigger: Trigger) -> Unstorable | None:
    """What in a trigger's outside text (typed text, button value or form input, who, where,
    the delivery key) the store would refuse; front ends' triggers are checked here before
    anything of them is stored."""
    return unstorable([trigger.text, trigger.actor, trigger.channel, trigger.delivery_id])
