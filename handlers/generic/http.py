"""`http.request`: call an HTTP API from a runbook (a status page, a CDN purge, a health
endpoint) and check its answer. Only hosts on `http.allowed_hosts` are reached, redirects
included; header values and the query string never reach logs or messages; the time and the
bytes read are bounded."""

from __future__ import annotations

import json
import os
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

from pydantic import Field, field_validator

from bot import messages
from bot.errors import PermanentError, Refused, RetryableError
from bot.lazy import httpx
from bot.prometheus import safe_url
from bot.registry import HandlerContext, Params, Result, handler
from bot.runbooks.templating import evaluate
from handlers.generic.common import expression

__all__ = ["HttpRequestParams", "http_request"]

Method = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
MAX_REDIRECTS = 5
_SHOWN_BODY = 2000  # characters of the answer shown under the step
_SAFE = ("GET", "HEAD")  # redirects are followed for these only


class HttpRequestParams(Params):
    url: str
    method: Method = "GET"
    body: Any = None  # sent as JSON; strings inside may be templates
    headers: dict[str, str] = {}  # values are sent, never shown or logged
    # Header name -> the environment variable holding its value (a token kept out of runbooks).
    secret_headers: dict[str, str] = {}
    expect_status: list[int] = Field(default_factory=lambda: list(range(200, 300)),
                                     min_length=1)
    # Expressions over `status` and `json` (the parsed answer, None when it is not JSON), each
    # of which must hold: `json.status == "ok"`, `json.items | length > 0`.
    checks: list[str] = []
    timeout_seconds: float | None = Field(default=None, gt=0, le=120)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"`{safe_url(value)[:200]}` is not an http(s) URL with a host")
        if parts.username or parts.password:
            raise ValueError("credentials in the URL would be shown and logged; use "
                             "`secret_headers`")
        return value

    @field_validator("expect_status")
    @classmethod
    def _statuses(cls, value: list[int]) -> list[int]:
        for status in value:
            if not 100 <= status <= 599:
                raise ValueError(f"{status} is not an HTTP status code")
        return value

    @field_validator("checks")
    @classmethod
    def _checks(cls, value: list[str]) -> list[str]:
        return [expression(text, what="check") for text in value]

    @field_validator("secret_headers")
    @classmethod
    def _variables(cls, value: dict[str, str]) -> dict[str, str]:
        for header, variable in value.items():
            if not variable.replace("_", "").isalnum() or not variable.isascii():
                raise ValueError(f"`{variable}` (for {header}) is not an environment variable "
                                 "name")
        return value


@handler("http.request", params=HttpRequestParams, mutating=True)
async def http_request(*, ctx: HandlerContext, params: HttpRequestParams, **_: object) -> Result:
    """Send an HTTP request to an allowed host and check the status and JSON answer."""
    config = ctx.settings.http
    shown = safe_url(params.url)
    _allowed(ctx, params.url)
    fields = _plan_fields(params)
    if ctx.dry_run:
        return Result(summary=messages.would_http(params.method, shown), fields=fields,
                      data={"url": shown, "method": params.method})
    headers = dict(params.headers) | _secret_headers(params)
    timeout = min(params.timeout_seconds or config.timeout_seconds, config.timeout_seconds)
    status, content, final = await _send(ctx, params, headers, timeout)
    ctx.log.info("%s %s answered %d (%d bytes)", params.method, safe_url(final), status,
                 len(content))
    text = content.decode("utf-8", errors="replace")
    try:
        parsed: Any = json.loads(text) if text.strip() else None
    except ValueError:
        parsed = None
    problems = []
    if status not in params.expect_status:
        problems.append(messages.http_unexpected_status(status, params.expect_status))
    for check in params.checks:
        if not evaluate(check, {"status": status, "json": parsed}):
            problems.append(messages.http_check_failed(check))
    data = {"status": status, "json": parsed, "url": shown}
    output = text[:_SHOWN_BODY] + ("…" if len(text) > _SHOWN_BODY else "") if text else None
    if problems:
        return Result(summary=messages.http_failed(params.method, shown, status, problems),
                      fields=fields, output=output, ok=False, data=data)
    return Result(summary=messages.http_done(params.method, shown, status), fields=fields,
                  output=output, data=data)


def _allowed(ctx: HandlerContext, url: str) -> None:
    host = urlsplit(url).hostname or ""
    if not ctx.settings.http.allows(host):
        raise Refused(messages.http_host_not_allowed(host))


def _plan_fields(params: HttpRequestParams) -> tuple[tuple[str, str], ...]:
    fields = [(messages.http_expect_field(), ", ".join(map(str, _ranges(params.expect_status))))]
    names = [*params.headers, *params.secret_headers]
    if names:
        fields.append((messages.http_headers_field(), ", ".join(names)))
    if params.body is not None:
        body = json.dumps(params.body, separators=(",", ":"), default=str)
        fields.append((messages.http_body_field(), body[:300] + ("…" if len(body) > 300 else "")))
    fields += [(messages.http_check_field(), check) for check in params.checks]
    return tuple(fields)


def _ranges(statuses: list[int]) -> list[str]:
    """200-299 rather than a hundred numbers."""
    out: list[str] = []
    ordered = sorted(set(statuses))
    start = prev = ordered[0]
    for status in [*ordered[1:], None]:
        if status is not None and status == prev + 1:
            prev = status
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if status is not None:
            start = prev = status
    return out


def _secret_headers(params: HttpRequestParams) -> dict[str, str]:
    found = {}
    for header, variable in params.secret_headers.items():
        value = os.environ.get(variable)
        if not value:
            raise PermanentError(messages.http_secret_missing(header, variable))
        found[header] = value
    return found


async def _send(ctx: HandlerContext, params: HttpRequestParams, headers: dict[str, str],
                timeout: float) -> tuple[int, bytes, str]:
    """The final status, the answer's bytes (bounded) and the URL that gave it; redirects of
    GET and HEAD are followed only to allowed hosts."""
    limit = ctx.settings.http.max_response_bytes
    url = params.url
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
        for _hop in range(MAX_REDIRECTS + 1):
            try:
                async with client.stream(params.method, url, headers=headers,
                                         json=params.body) as response:
                    location = response.headers.get("location")
                    if response.is_redirect and location and params.method in _SAFE:
                        url = urljoin(url, location)
                        if urlsplit(url).scheme not in ("http", "https"):
                            raise PermanentError(messages.http_bad_redirect(safe_url(url)))
                        host = urlsplit(url).hostname or ""
                        if not ctx.settings.http.allows(host):
                            raise PermanentError(messages.http_redirect_not_allowed(host))
                        continue
                    content = bytearray()
                    async for chunk in response.aiter_bytes():
                        content += chunk
                        if len(content) > limit:
                            raise PermanentError(messages.http_too_large(limit))
                    return response.status_code, bytes(content), url
            except httpx.TimeoutException as exc:
                raise _failure(params, messages.http_timeout(safe_url(url), timeout)) from exc
            except httpx.HTTPError as exc:
                raise _failure(params, messages.http_unreachable(
                    safe_url(url), type(exc).__name__)) from exc
    raise PermanentError(messages.http_too_many_redirects(MAX_REDIRECTS))


def _failure(params: HttpRequestParams, text: str) -> PermanentError | RetryableError:
    # A GET may be sent again; a POST that timed out may have done its work: never twice.
    if params.method in _SAFE:
        return RetryableError(text, delay=1.0)
    return PermanentError(text)
