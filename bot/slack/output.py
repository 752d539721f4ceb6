"""Long step output as thread replies: code blocks cut at line ends, a bounded number of them,
and a last message saying how much was left out, so nothing disappears without a word."""

from __future__ import annotations

from dataclasses import dataclass

from bot import messages
from bot.markup import clip, units
from bot.slack.mrkdwn import fit

__all__ = ["MAX_MESSAGES", "MESSAGE_LIMIT", "Chunk", "chunk_output", "output_messages"]

MESSAGE_LIMIT = 3500  # units of one reply, fences and heading included
MAX_MESSAGES = 10  # code block replies per output; then one "left out" message
HEADING_LIMIT = 1000  # the heading (step name, part) of one reply
STEP_NAME = 200  # a step's name in a heading
_FENCE = "```"
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


@dataclass(frozen=True)
class Chunk:
    text: str  # escaped for mrkdwn
    lines: int  # output lines that end in this chunk


def _escaped(text: str) -> str:
    # Inside a code block nothing formats, but Slack's three control characters still count;
    # a zero-width space keeps a ``` inside the output from closing our block.
    return "".join(_ENTITIES.get(c, c) for c in text).replace(_FENCE, "`\u200b``")


def _pieces(line: str, limit: int) -> list[str]:
    """One line cut so each escaped piece fits; cuts never fall inside an entity or a
    surrogate pair."""
    pieces: list[str] = []
    current = ""
    for char in line:
        shown = _escaped(char)
        if units(current) + units(shown) > limit:
            pieces.append(current)
            current = ""
        current += shown
    pieces.append(current)
    return pieces


def chunk_output(output: str, limit: int) -> list[Chunk]:
    """Escaped pieces of at most `limit` units, cut at line ends where lines allow."""
    chunks: list[Chunk] = []
    current: list[str] = []
    size = 0
    for line in output.splitlines():
        text = _escaped(line)
        if units(text) > limit:
            if current:
                chunks.append(Chunk("\n".join(current), len(current)))
                current, size = [], 0
            parts = _pieces(line, limit)
            chunks += [Chunk(p, 0) for p in parts[:-1]]
            chunks.append(Chunk(parts[-1], 1))
            continue
        added = units(text) + (1 if current else 0)
        if current and size + added > limit:
            chunks.append(Chunk("\n".join(current), len(current)))
            current, size, added = [], 0, units(text)
        current.append(text)
        size += added
    if current:
        chunks.append(Chunk("\n".join(current), len(current)))
    return chunks


def output_messages(step: str, output: str, execution_id: str) -> list[str]:
    """The replies for one step's output: up to MAX_MESSAGES code blocks, then what was left."""
    name = clip(step, STEP_NAME)
    widest = units(fit(messages.output_heading(name, 999, 999), HEADING_LIMIT))
    limit = MESSAGE_LIMIT - widest - 2 * len(_FENCE) - 3
    chunks = chunk_output(output, limit)
    shown = chunks[:MAX_MESSAGES]
    replies = [
        f"{fit(messages.output_heading(name, n, len(chunks)), HEADING_LIMIT)}\n"
        f"{_FENCE}\n{c.text}\n{_FENCE}"
        for n, c in enumerate(shown, start=1)
    ]
    left_out = sum(c.lines for c in chunks[MAX_MESSAGES:])
    if len(chunks) > MAX_MESSAGES:
        replies.append(fit(messages.output_left_out(name, left_out, execution_id),
                           MESSAGE_LIMIT))
    return replies
