"""How opsbot's log lines look: text for people, or one JSON object per line for a log pipeline
(`--log-format json`, `OPSBOT_LOG_FORMAT=json`), each carrying the execution and approval
request it belongs to; and, in both formats, no secret: known secret values and token-shaped
strings are masked before a line is written.

The ids travel in context variables, so every record logged while an execution runs (in the
event loop or in a worker thread started with `asyncio.to_thread`) carries them.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "FORMATS",
    "JsonFormatter",
    "Redactor",
    "TextFormatter",
    "forget_secrets",
    "formatter",
    "log_context",
    "remember_secrets",
]

FORMATS = ("text", "json")
MASK = "[redacted]"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

_execution_id: ContextVar[str | None] = ContextVar("opsbot_execution_id", default=None)
_request_id: ContextVar[str | None] = ContextVar("opsbot_request_id", default=None)

# Token shapes worth masking wherever they turn up: Slack tokens (xoxb-, xoxp-, xapp-, ...),
# bearer and basic credentials in a header, and the password in a database URL.
_PATTERNS = (
    re.compile(r"\bxox[a-z]-[A-Za-z0-9-]{8,}"),
    re.compile(r"\bxapp-[A-Za-z0-9-]{8,}"),
    re.compile(r"(?i)(\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@\s]+(@)"),
)


# Every line that one of _PATTERNS could match has one of these in it (case aside).
_MAYBE_TOKEN = re.compile(r"(?i)xox[a-z]-|xapp-|bearer|basic|://")


class Redactor:
    """Masks the secret values it was told about and anything shaped like a token."""

    # Shorter values would mask ordinary words; no real token or signing secret is this short.
    SHORTEST = 6

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: frozenset[str] = frozenset()
        self._longest_first: tuple[str, ...] = ()

    def remember(self, values: Iterable[str | None]) -> None:
        with self._lock:
            self._values = self._values | {v for v in values if v and len(v) >= self.SHORTEST}
            self._longest_first = tuple(sorted(self._values, key=len, reverse=True))

    def forget(self) -> None:
        with self._lock:
            self._values = frozenset()
            self._longest_first = ()

    def __call__(self, text: str) -> str:
        for value in self._longest_first:
            if value in text:
                text = text.replace(value, MASK)
        if _MAYBE_TOKEN.search(text) is None:
            return text  # most lines: one scan instead of one per pattern
        for pattern in _PATTERNS:
            text = pattern.sub(_masked, text)
        return text


def _masked(match: re.Match[str]) -> str:
    groups = [g for g in match.groups() if g is not None]
    if len(groups) == 2:  # a URL: keep scheme, user and host
        return f"{groups[0]}{MASK}{groups[1]}"
    if groups:  # a header: keep the scheme
        return f"{groups[0]}{MASK}"
    return MASK


REDACT = Redactor()


def remember_secrets(values: Iterable[str | None]) -> None:
    """Mask these values (tokens, signing secrets, passwords) in every log line from now on."""
    REDACT.remember(values)


def forget_secrets() -> None:
    REDACT.forget()


@contextmanager
def log_context(*, execution_id: str | None = None,
                request_id: str | None = None) -> Iterator[None]:
    """Records logged inside the block carry these ids (None leaves an outer value)."""
    tokens = []
    if execution_id is not None:
        tokens.append((_execution_id, _execution_id.set(execution_id)))
    if request_id is not None:
        tokens.append((_request_id, _request_id.set(request_id)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def _ids() -> dict[str, str]:
    found = {"execution_id": _execution_id.get(), "request_id": _request_id.get()}
    return {k: v for k, v in found.items() if v}


class TextFormatter(logging.Formatter):
    """The classic line, ids appended when known, secrets masked."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = _ids()
        if ids:
            line += " " + " ".join(f"{k}={v}" for k, v in ids.items())
        return REDACT(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the execution
    and request ids when known, and the traceback as `exception`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": REDACT(record.getMessage()),
            **_ids(),
        }
        if record.exc_info:
            entry["exception"] = REDACT(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = REDACT(record.exc_text)
        if record.stack_info:
            entry["stack"] = REDACT(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def formatter(log_format: str) -> logging.Formatter:
    """The formatter for `text` or `json` (ValueError for anything else)."""
    if log_format == "json":
        return JsonFormatter()
    if log_format == "text":
        return TextFormatter()
    raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {log_format!r}")
