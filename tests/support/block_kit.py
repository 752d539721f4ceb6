"""What Slack checks of a message or modal before taking it, and what a person then sees.

`message_problems` and `modal_problems` apply Slack's documented Block Kit limits (written here
from docs.slack.dev/reference/block-kit, independently of opsbot's own table) and slack_sdk's
own validators; the Slack stand-in refuses a post with any problem, as Slack does
(`invalid_blocks`, `msg_blocks_too_long`, `msg_too_long`, `invalid_arguments` for views).

`shown` reads mrkdwn as Slack displays it (entities and tokens decoded, formatting characters at
word breaks taken as formatting, emoji shortcodes and quotes applied), so a test can check that
a value reached people as typed; `pings` lists what in a text would mention or link.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block

__all__ = ["message_problems", "modal_problems", "pings", "shown", "text_objects", "units"]

# Slack's limits, in characters (counted here as UTF-16 code units, the strictest reading).
BLOCKS_PER_MESSAGE = 50
BLOCKS_PER_MODAL = 100
MESSAGE_TEXT = 40_000
BLOCKS_TEXT_TOTAL = 12_000  # chat.postMessage's msg_blocks_too_long (slackapi/bolt-js#2509)
TEXT_OBJECT = 3000
SECTION_FIELDS = 10
FIELD_TEXT = 2000
CONTEXT_ELEMENTS = 10
HEADER_TEXT = 150
ACTIONS_ELEMENTS = 25
BUTTON_TEXT = 75
BUTTON_VALUE = 2000
URL = 3000
ID = 255  # block_id, action_id, callback_id
CONFIRM = {"title": 100, "text": 300, "confirm": 30, "deny": 30}
INPUT_LABEL = 2000
PLACEHOLDER = 150
TEXT_INPUT_MAX = 3000
MODAL_TITLE = 24
MODAL_BUTTON = 24
PRIVATE_METADATA = 3000


def units(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _text(obj: Any, where: str, limit: int = TEXT_OBJECT, *, plain_only: bool = False,
          ) -> list[str]:
    if not isinstance(obj, dict) or obj.get("type") not in ("plain_text", "mrkdwn"):
        return [f"{where}: not a text object"]
    if plain_only and obj["type"] != "plain_text":
        return [f"{where}: must be plain_text"]
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        return [f"{where}: text must have at least 1 character"]
    problems = []
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        problems.append(f"{where}: text is not valid UTF-16 (a lone surrogate)")
    if units(text) > min(limit, TEXT_OBJECT):
        problems.append(f"{where}: text has {units(text)} characters, more than {limit}")
    if "emoji" in obj and obj["type"] != "plain_text":
        problems.append(f"{where}: emoji is only for plain_text")
    if "verbatim" in obj and obj["type"] != "mrkdwn":
        problems.append(f"{where}: verbatim is only for mrkdwn")
    return problems


def _id(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, str) or not value or len(value) > ID:
        return [f"{where}: must be 1 to {ID} characters"]
    return []


def _confirm(obj: Any, where: str) -> list[str]:
    problems = _text(obj.get("title"), f"{where}.title", CONFIRM["title"], plain_only=True)
    problems += _text(obj.get("text"), f"{where}.text", CONFIRM["text"])
    for key in ("confirm", "deny"):
        problems += _text(obj.get(key), f"{where}.{key}", CONFIRM[key], plain_only=True)
    return problems


def _button(element: dict[str, Any], where: str) -> list[str]:
    problems = _text(element.get("text"), f"{where}.text", BUTTON_TEXT, plain_only=True)
    problems += _id(element.get("action_id"), f"{where}.action_id")
    value = element.get("value")
    if value is not None and (not isinstance(value, str) or units(value) > BUTTON_VALUE):
        problems.append(f"{where}.value: more than {BUTTON_VALUE} characters")
    if element.get("url") is not None and units(str(element["url"])) > URL:
        problems.append(f"{where}.url: more than {URL} characters")
    if element.get("style") not in (None, "primary", "danger"):
        problems.append(f"{where}.style: must be primary or danger")
    if "confirm" in element:
        problems += _confirm(element["confirm"], f"{where}.confirm")
    return problems


def _listed(value: Any, most: int, where: str, problems: list[str]) -> list[Any]:
    """`value` if it is a list of 1 to `most` items; else nothing, and a problem noted."""
    if isinstance(value, list) and 1 <= len(value) <= most:
        return value
    problems.append(f"{where}: 1 to {most} items")
    return []


def _block(block: Any, where: str) -> list[str]:
    if not isinstance(block, dict):
        return [f"{where}: not an object"]
    kind = block.get("type")
    problems = _id(block.get("block_id"), f"{where}.block_id")
    if kind == "section":
        if "text" not in block and "fields" not in block:
            problems.append(f"{where}: needs text or fields")
        if "text" in block:
            problems += _text(block["text"], f"{where}.text")
        if "fields" in block:
            fields = _listed(block["fields"], SECTION_FIELDS, f"{where}.fields", problems)
            for i, field in enumerate(fields):
                problems += _text(field, f"{where}.fields[{i}]", FIELD_TEXT)
    elif kind == "context":
        elements = _listed(block.get("elements"), CONTEXT_ELEMENTS, f"{where}.elements",
                           problems)
        for i, element in enumerate(elements):
            if element.get("type") != "image":
                problems += _text(element, f"{where}.elements[{i}]")
    elif kind == "header":
        problems += _text(block.get("text"), f"{where}.text", HEADER_TEXT, plain_only=True)
    elif kind == "actions":
        elements = _listed(block.get("elements"), ACTIONS_ELEMENTS, f"{where}.elements",
                           problems)
        for i, element in enumerate(elements):
            if element.get("type") == "button":
                problems += _button(element, f"{where}.elements[{i}]")
    elif kind == "input":
        problems += _text(block.get("label"), f"{where}.label", INPUT_LABEL, plain_only=True)
        element = block.get("element") or {}
        problems += _id(element.get("action_id"), f"{where}.element.action_id")
        if "placeholder" in element:
            problems += _text(element["placeholder"], f"{where}.element.placeholder",
                              PLACEHOLDER, plain_only=True)
        if int(element.get("max_length") or 0) > TEXT_INPUT_MAX:
            problems.append(f"{where}.element.max_length: at most {TEXT_INPUT_MAX}")
    elif kind != "divider":
        problems.append(f"{where}: unknown block type {kind!r}")
    try:
        parsed = Block.parse(block)
        if parsed is not None:
            parsed.validate_json()
    except (SlackObjectFormationError, KeyError, TypeError, ValueError) as exc:
        problems.append(f"{where}: slack_sdk: {exc}")
    return problems


def _blocks(blocks: Any, limit: int) -> list[str]:
    if not isinstance(blocks, list):
        return ["blocks: not a list"]
    problems = [] if len(blocks) <= limit else [f"blocks: {len(blocks)}, more than {limit}"]
    for i, block in enumerate(blocks):
        problems += _block(block, f"blocks[{i}]")
    ids = [b.get("block_id") for b in blocks if isinstance(b, dict) and b.get("block_id")]
    if len(ids) != len(set(ids)):
        problems.append("blocks: block_id repeated")
    actions = [e.get("action_id") for b in blocks if isinstance(b, dict)
               for e in b.get("elements") or [] if isinstance(e, dict) and e.get("action_id")]
    if len(actions) != len(set(actions)):
        problems.append("blocks: action_id repeated")
    return problems


def text_objects(value: Any) -> Iterator[dict[str, Any]]:
    """Every text object in a block structure, in order."""
    if isinstance(value, list):
        for item in value:
            yield from text_objects(item)
    elif isinstance(value, dict):
        if value.get("type") in ("mrkdwn", "plain_text") and isinstance(value.get("text"), str):
            yield value
            return
        for item in value.values():
            yield from text_objects(item)


def message_problems(blocks: Any, text: str) -> tuple[str, list[str]] | None:
    """(Slack's error code, what is wrong) for a message Slack would refuse; None if fine."""
    if units(text) > MESSAGE_TEXT:
        return "msg_too_long", [f"text: {units(text)} characters"]
    if blocks is None:
        return None
    problems = _blocks(blocks, BLOCKS_PER_MESSAGE)
    if problems:
        return "invalid_blocks", problems
    total = sum(units(t["text"]) for t in text_objects(blocks))
    if total > BLOCKS_TEXT_TOTAL:
        return "msg_blocks_too_long", [f"blocks hold {total} characters of text"]
    return None


def modal_problems(view: dict[str, Any]) -> list[str]:
    problems = _text(view.get("title"), "view.title", MODAL_TITLE, plain_only=True)
    for key in ("submit", "close"):
        if key in view:
            problems += _text(view[key], f"view.{key}", MODAL_BUTTON, plain_only=True)
    if units(str(view.get("private_metadata") or "")) > PRIVATE_METADATA:
        problems.append(f"view.private_metadata: more than {PRIVATE_METADATA} characters")
    problems += _id(view.get("callback_id"), "view.callback_id")
    blocks = view.get("blocks")
    if not blocks:
        problems.append("view.blocks: at least 1")
    return problems + _blocks(blocks or [], BLOCKS_PER_MODAL)


# What people see ---------------------------------------------------------------------------

_TOKEN = re.compile(r"<([^<>]*)>|&(amp|lt|gt);")
_ENTITY = {"amp": "&", "lt": "<", "gt": ">"}
_SHORTCODE = re.compile(r":[a-z0-9_+'-]+:")


def pings(mrkdwn: str) -> list[str]:
    """Tokens that would mention someone or link somewhere (channel links are ours)."""
    return [m.group(0) for m in _TOKEN.finditer(mrkdwn)
            if m.group(1) is not None and not m.group(1).startswith(("#C", "!date^"))]


def _formatted(text: str) -> str:
    """Plain stretches: formatting characters at word breaks are formatting, not text."""
    out = []
    for i, char in enumerate(text):
        if char in "*_~":
            before, after = text[i - 1] if i else "", text[i + 1] if i + 1 < len(text) else ""
            if not (before.isalnum() and after.isalnum()):
                continue
        out.append(char)
    return _SHORTCODE.sub("[emoji]", "".join(out))


def _pieces(mrkdwn: str) -> Iterator[tuple[str, str]]:
    """("raw", text Slack parses), ("text", characters it shows as such) or ("`", "")."""
    quoted = re.sub(r"(?m)^([ \t]*)&gt;", "\\1\x02", mrkdwn)  # a quote, not a character
    pos = 0
    for match in _TOKEN.finditer(quoted):
        yield from _raw(quoted[pos:match.start()])
        token, entity = match.group(1), match.group(2)
        if entity:
            yield "text", _ENTITY[entity]
        elif token.startswith("!date^"):
            yield "text", token.split("|", 1)[1]
        elif token.startswith("#"):
            yield "text", "#" + token[1:].split("|")[-1]
        else:
            yield "text", f"<{token}>"
        pos = match.end()
    yield from _raw(quoted[pos:])


def _raw(text: str) -> Iterator[tuple[str, str]]:
    for part in re.split(r"(`)", text.replace("\u00ad", "").replace("\x02", "[quote]")):
        if part == "`":
            yield "`", ""
        elif part:
            yield "raw", part


def shown(mrkdwn: str) -> str:
    """The text as Slack displays it, formatting taken away."""
    out = []
    code = False
    for kind, text in _pieces(mrkdwn):
        if kind == "`":
            code = not code  # our code delimiters: inside, nothing formats
        elif kind == "text" or code:
            out.append(text)
        else:
            out.append(_formatted(text))
    return "".join(out)
