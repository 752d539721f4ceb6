"""The one boundary to Loki: `query_range` over HTTP (httpx), its answers read as log lines, its
failures as our error tree, without the URL's credentials.

LogQL is built here and only here: label values and line filters from chat or configuration
are quoted as LogQL string literals, never interpolated raw.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.errors import PermanentError, RetryableError
from bot.lazy import httpx
from bot.prometheus import check_label_name, safe_url

__all__ = ["LogLine", "LokiClient", "line_filter", "logql_string", "stream_selector"]

MAX_LIMIT = 5000  # Loki's default max_entries_limit_per_query


def logql_string(value: str) -> str:
    """A double-quoted LogQL string holding `value` exactly. LogQL reads Go string literals,
    and JSON's escapes (\\" \\\\ \\n \\uXXXX) are a subset of Go's."""
    return json.dumps(value, ensure_ascii=False)


def stream_selector(labels: Mapping[str, str]) -> str:
    """`{a="x",b="y"}`: names checked, values quoted."""
    return "{" + ",".join(f"{check_label_name(name)}={logql_string(value)}"
                          for name, value in labels.items()) + "}"


def line_filter(text: str, *, regex: bool = False) -> str:
    """`|= "text"` (a plain substring), or `|~ "re"` for a regex from the configuration."""
    return f"{'|~' if regex else '|='} {logql_string(text)}"


@dataclass(frozen=True)
class LogLine:
    time: datetime
    nanos: int  # Loki's timestamp, for a stable order
    labels: dict[str, str]
    line: str


class LokiClient:
    """Range queries against one Loki."""

    def __init__(self, url: str, *, tenant: str | None = None, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.shown_url = safe_url(self.url)
        headers = {"X-Scope-OrgID": tenant} if tenant else {}
        self._http = httpx.AsyncClient(timeout=timeout, headers=headers)

    async def __aenter__(self) -> LokiClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._http.aclose()

    async def query_range(self, logql: str, start: datetime, end: datetime, limit: int,
                          ) -> list[LogLine]:
        """The newest `limit` lines matching `logql` between start and end, oldest first."""
        params = {
            "query": logql,
            "start": str(_nanos(start)),
            "end": str(_nanos(end)),
            "limit": str(max(1, min(limit, MAX_LIMIT))),
            "direction": "backward",
        }
        try:
            response = await self._http.get(f"{self.url}/loki/api/v1/query_range", params=params)
        except httpx.TimeoutException as exc:
            raise RetryableError(f"Loki at {self.shown_url} did not answer in time",
                                 delay=2.0) from exc
        except httpx.HTTPError as exc:
            raise RetryableError(f"Loki at {self.shown_url} is unreachable "
                                 f"({type(exc).__name__})", delay=2.0) from exc
        if response.status_code == 400:
            raise PermanentError(f"Loki rejected the query: {response.text.strip()[:300]}")
        if response.status_code in (401, 403):
            raise PermanentError(f"Loki at {self.shown_url} refused access "
                                 f"({response.status_code})")
        if response.status_code == 404:
            raise PermanentError(f"Loki at {self.shown_url} has no query API (404): "
                                 "is LOKI_URL right?")
        if response.status_code == 429 or response.status_code >= 500:
            raise RetryableError(f"Loki failed ({response.status_code})", delay=2.0)
        if response.status_code != 200:
            raise PermanentError(f"Loki answered {response.status_code}")
        return _lines(response, self.shown_url)


def _lines(response: httpx.Response, shown_url: str) -> list[LogLine]:
    try:
        body = response.json()
        if body.get("status") != "success" or body["data"]["resultType"] != "streams":
            raise ValueError("not a streams answer")
        found = [
            LogLine(datetime.fromtimestamp(int(ns) / 1e9, UTC), int(ns),
                    {str(k): str(v) for k, v in (stream.get("stream") or {}).items()}, str(line))
            for stream in body["data"]["result"]
            for ns, line in stream["values"]
        ]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PermanentError(f"Loki at {shown_url} gave an answer opsbot cannot read") from exc
    found.sort(key=lambda entry: entry.nanos)
    return found


def _nanos(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000
