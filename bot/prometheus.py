"""The one boundary to Prometheus: the synchronous `prometheus-api-client` runs in worker threads,
and its failures come back as our error tree, without the URL's credentials."""

from __future__ import annotations

import ast
import asyncio
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from bot.errors import PermanentError, RetryableError
from bot.lazy import lazy_module
from bot.markup import code

# Imported when a Prometheus is first asked (bot/lazy.py): the client brings `requests`
# (and urllib3, whose `Retry` it takes).
if TYPE_CHECKING:
    import prometheus_api_client
    import requests
    from prometheus_api_client import exceptions as prometheus_errors
    from urllib3.util import retry as urllib3_retry
else:
    prometheus_api_client = lazy_module("prometheus_api_client")
    prometheus_errors = lazy_module("prometheus_api_client.exceptions")
    requests = lazy_module("requests")
    urllib3_retry = lazy_module("urllib3.util.retry")

__all__ = [
    "PrometheusClient",
    "check_label_name",
    "labels_selector",
    "promql_string",
    "safe_url",
]

T = TypeVar("T")
TIMEOUT_SECONDS = 10
_STATUS = re.compile(r"HTTP Status Code ([0-9]+) \((.*)\)\s*$", re.DOTALL)


_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def check_label_name(name: str) -> str:
    """`name` when it is a label name as Prometheus spells it, else a PermanentError."""
    if not _LABEL_NAME.fullmatch(name):
        raise PermanentError(f"{code(name[:60])} is not a valid label name")
    return name


def promql_string(value: str) -> str:
    """A double-quoted PromQL (and Alertmanager matcher) string holding `value` exactly:
    label values are data, never query syntax."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def labels_selector(labels: Mapping[str, str], extra: str = "") -> str:
    """`{a="x",b="y"<extra>}`; names are checked, values quoted."""
    parts = [f"{check_label_name(name)}={promql_string(value)}" for name, value in labels.items()]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}"


def safe_url(url: str) -> str:
    """The URL without user name and password, fit for messages and logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class PrometheusClient:
    """Instant and range queries against one Prometheus; one value per query, or an error."""

    def __init__(self, url: str, *, timeout: float = TIMEOUT_SECONDS) -> None:
        self.url = url.rstrip("/")
        self.shown_url = safe_url(self.url)
        # No retries inside: a measurement that fails counts as inconclusive, and the
        # dispatcher retries steps; urllib3's backoff would only stall the event loop's threads.
        self._connect = prometheus_api_client.PrometheusConnect(
            url=self.url,
            retry=urllib3_retry.Retry(total=0, raise_on_status=False),
            timeout=int(max(1, timeout)),
        )

    def close(self) -> None:
        self._connect.close()

    async def __aenter__(self) -> PrometheusClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        self.close()

    async def query(self, promql: str) -> float | None:
        """The value of an instant query: None when it returns nothing (NaN is returned as is)."""
        result = await self._call(self._connect.custom_query, query=promql)
        if _is_scalar(result):
            return _number(result[1])
        series = list(result or [])
        if not series:
            return None
        if len(series) > 1:
            raise PermanentError(
                f"the query returned {len(series)} series, not one value; aggregate it "
                f"(sum, max, ...): {code(promql)}"
            )
        return _number(series[0]["value"][1])

    async def vector(self, promql: str) -> list[tuple[dict[str, str], float]]:
        """Every series of an instant query, with its labels (diagnoses want which ones)."""
        result: Any = await self._call(self._connect.custom_query, query=promql)
        out: list[tuple[dict[str, str], float]] = []
        for series in result or []:
            try:
                out.append(({str(k): str(v) for k, v in (series.get("metric") or {}).items()},
                            _number(series["value"][1])))
            except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
                raise PermanentError(
                    f"Prometheus at {self.shown_url} gave an answer opsbot cannot read"
                ) from exc
        return out

    async def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets (labels, health, lastError, lastScrape)."""
        data: Any = await self._call(self._connect.get_targets, state="active")
        found = data.get("activeTargets") if isinstance(data, dict) else None
        return [t for t in found or [] if isinstance(t, dict)]

    async def query_range(
        self, promql: str, start: datetime, end: datetime, step: float
    ) -> list[tuple[datetime, float]]:
        """The points of a range query (one series; empty when it returns none)."""
        result = await self._call(
            self._connect.custom_query_range,
            query=promql,
            start_time=start,
            end_time=end,
            step=f"{max(step, 0.001):.3f}",  # float seconds; "2.5s" is not a duration
        )
        series = list(result or [])
        if not series:
            return []
        if len(series) > 1:
            raise PermanentError(
                f"the query returned {len(series)} series, not one; aggregate it: {code(promql)}"
            )
        return [
            (datetime.fromtimestamp(float(ts), UTC), _number(value))
            for ts, value in series[0]["values"]
        ]

    async def range_series(
        self, promql: str, start: datetime, end: datetime, step: float, *, timeout: float,
    ) -> list[tuple[dict[str, str], list[tuple[datetime, float]]]]:
        """Every series of a range query with its labels (an ad-hoc graph wants them all);
        Prometheus stops evaluating after `timeout` seconds."""
        result: Any = await self._call(
            self._connect.custom_query_range,
            query=promql,
            start_time=start,
            end_time=end,
            step=f"{max(step, 0.001):.3f}",
            params={"timeout": f"{max(1, round(timeout * 1000))}ms"},  # Go durations: whole
        )
        out: list[tuple[dict[str, str], list[tuple[datetime, float]]]] = []
        for series in result or []:
            try:
                labels = {str(k): str(v) for k, v in (series.get("metric") or {}).items()}
                points = [(datetime.fromtimestamp(float(ts), UTC), _number(value))
                          for ts, value in series["values"]]
            except (AttributeError, KeyError, TypeError, ValueError) as exc:
                raise PermanentError(
                    f"Prometheus at {self.shown_url} gave an answer opsbot cannot read"
                ) from exc
            out.append((labels, points))
        return out

    async def _call(self, fn: Callable[..., T], /, **kwargs: Any) -> T:
        try:
            return await asyncio.to_thread(fn, **kwargs)
        except prometheus_errors.PrometheusApiClientException as exc:
            raise self._translate(exc) from exc
        except requests.exceptions.Timeout as exc:
            raise RetryableError(
                f"Prometheus at {self.shown_url} did not answer in time", delay=2.0
            ) from exc
        except (requests.exceptions.RequestException, OSError) as exc:
            raise RetryableError(
                f"Prometheus at {self.shown_url} is unreachable ({type(exc).__name__})", delay=2.0
            ) from exc
        except (ValueError, KeyError, TypeError) as exc:  # not Prometheus' JSON
            raise PermanentError(
                f"Prometheus at {self.shown_url} gave an answer opsbot cannot read"
            ) from exc

    def _translate(self, exc: prometheus_errors.PrometheusApiClientException,
                   ) -> PermanentError | RetryableError:
        status, error = _status_and_error(str(exc))
        if status == 400 or status == 422:
            return PermanentError(f"Prometheus rejected the query: {error}")
        if status in (401, 403):
            return PermanentError(f"Prometheus at {self.shown_url} refused access ({status})")
        if status == 404:
            return PermanentError(
                f"Prometheus at {self.shown_url} has no query API (404): is PROMETHEUS_URL right?"
            )
        if status == 429 or status >= 500 or status == 0:
            return RetryableError(f"Prometheus failed ({status}): {error}", delay=2.0)
        return PermanentError(f"Prometheus answered {status}: {error}")


def _status_and_error(text: str) -> tuple[int, str]:
    """The HTTP status and Prometheus' own error text from the client's exception message."""
    match = _STATUS.match(text)
    if not match:
        return 0, "unexpected answer"
    status = int(match.group(1))
    body: Any = match.group(2)
    try:
        raw = ast.literal_eval(body)  # the client puts the bytes' repr in its message
        body = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        payload = json.loads(body)
        error = str(payload.get("error") or payload.get("errorType") or "error")
    except (ValueError, SyntaxError, AttributeError):
        error = str(body).strip()[:300] or "error"
    return status, error


def _is_scalar(result: Any) -> bool:
    """A scalar or string result is `[time, "value"]` rather than a list of series."""
    return (
        isinstance(result, list)
        and len(result) == 2
        and isinstance(result[0], (int, float))
        and isinstance(result[1], str)
    )


def _number(text: Any) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError) as exc:
        raise PermanentError(f"Prometheus returned {code(text)}, which is not a number") from exc
    return value
