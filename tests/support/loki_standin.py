"""A local stand-in of Loki's query API, reached over real HTTP (no Loki binary can be installed
here): `GET /loki/api/v1/query_range` answers Loki's documented JSON,
`{"status":"success","data":{"resultType":"streams","result":[{"stream":{...},"values":
[["<ns epoch>","line"], ...]}]}}`, and records every query it got.

It reads the part of LogQL opsbot writes, the way Loki's parser does: a stream selector of
`name="value"` matchers (values are Go string literals), then `|= "text"` and `|~ "regex"` line
filters. A query it cannot read gets Loki's 400 `parse error`, so a value that broke out of its
quotes fails the test instead of passing quietly. Streams are what a test `push`es; matching,
the time range, `limit` and `direction` apply as in Loki.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.support.slack_standin import ServerThread

__all__ = ["LogQuery", "LokiStandIn", "parse_logql"]

_NAME = re.compile(r"\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=|!=|=~|!~)\s*")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


@dataclass(frozen=True)
class LogQuery:
    """A query as Loki read it: its matchers and line filters."""

    selector: dict[str, str]
    filters: list[tuple[str, str]]  # ("|=" | "|~", text)


def _go_string(text: str, at: int) -> tuple[str, int]:
    match = _STRING.match(text, at)
    if not match:
        raise ValueError(f"expected a string at {at}")
    return json.loads(match.group(0)), match.end()


def parse_logql(query: str) -> LogQuery:
    """The selector and line filters of `query`; ValueError for anything else."""
    text = query.strip()
    if not text.startswith("{"):
        raise ValueError("a query starts with a stream selector")
    at, selector = 1, {}
    while True:
        match = _NAME.match(text, at)
        if not match or match.group(2) != "=":
            raise ValueError(f"expected name=\"value\" at {at}")
        value, at = _go_string(text, match.end())
        selector[match.group(1)] = value
        rest = text[at:].lstrip()
        at = len(text) - len(rest)
        if rest.startswith(","):
            at += 1
            continue
        if rest.startswith("}"):
            at += 1
            break
        raise ValueError(f"unexpected {rest[:10]!r} in the selector")
    filters = []
    while text[at:].strip():
        rest = text[at:].lstrip()
        at = len(text) - len(rest)
        operator = rest[:2]
        if operator not in ("|=", "|~"):
            raise ValueError(f"unexpected {rest[:10]!r} after the selector")
        rest2 = text[at + 2:].lstrip()
        value, at = _go_string(text, len(text) - len(rest2))
        filters.append((operator, value))
    return LogQuery(selector, filters)


@dataclass
class _Stream:
    labels: dict[str, str]
    values: list[tuple[int, str]] = field(default_factory=list)


class LokiStandIn:
    """Loki's query_range over HTTP on 127.0.0.1; `push` adds lines, `queries` lists what came."""

    def __init__(self) -> None:
        self.queries: list[dict[str, str]] = []
        self.status: int | None = None  # answer every query with this status, when set
        self._streams: list[_Stream] = []
        self._lock = threading.Lock()
        self._thread: ServerThread | None = None
        self.app = Starlette(routes=[Route("/loki/api/v1/query_range", self._query_range)])

    @property
    def url(self) -> str:
        assert self._thread is not None
        return self._thread.url

    def start(self) -> LokiStandIn:
        self._thread = ServerThread(self.app, lifespan="off").start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.stop()

    def push(self, labels: dict[str, str], lines: list[tuple[datetime, str]]) -> None:
        with self._lock:
            stream = next((s for s in self._streams if s.labels == labels), None)
            if stream is None:
                stream = _Stream(dict(labels))
                self._streams.append(stream)
            stream.values += [(int(t.timestamp() * 1e9), line) for t, line in lines]

    def parsed(self) -> list[LogQuery]:
        return [parse_logql(q["query"]) for q in self.queries]

    async def _query_range(self, request: Request) -> Response:
        params = dict(request.query_params)
        with self._lock:
            self.queries.append(params)
            if self.status is not None:
                return PlainTextResponse("injected failure", status_code=self.status)
            try:
                query = parse_logql(params["query"])
                start, end = int(params["start"]), int(params["end"])
                limit = int(params.get("limit", "100"))
            except (KeyError, ValueError) as exc:
                return PlainTextResponse(f"parse error : {exc}", status_code=400)
            result: list[dict[str, Any]] = []
            entries: list[tuple[int, int, str]] = []
            for index, stream in enumerate(self._streams):
                if any(stream.labels.get(k) != v for k, v in query.selector.items()):
                    continue
                for ns, line in stream.values:
                    if not start <= ns <= end or not _passes(line, query.filters):
                        continue
                    entries.append((ns, index, line))
            backward = params.get("direction", "backward") == "backward"
            entries.sort(reverse=backward)
            entries = entries[:limit]
            by_stream: dict[int, list[list[str]]] = {}
            for ns, index, line in entries:
                by_stream.setdefault(index, []).append([str(ns), line])
            for index, values in by_stream.items():
                result.append({"stream": self._streams[index].labels, "values": values})
        return JSONResponse({"status": "success", "data": {
            "resultType": "streams", "result": result, "stats": {}}})


def _passes(line: str, filters: list[tuple[str, str]]) -> bool:
    for operator, text in filters:
        if operator == "|=" and text not in line:
            return False
        if operator == "|~" and not re.search(text.replace("(?i)", ""), line,
                                             re.IGNORECASE if "(?i)" in text else 0):
            return False
    return True
