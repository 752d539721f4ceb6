"""The boundary to Alertmanager's API v2 (httpx, async): which alerts fire now, and later the
silences. Label matchers are built here, validated and quoted, so user text never becomes
matcher syntax."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from bot.errors import PermanentError, RetryableError
from bot.prometheus import safe_url

__all__ = ["Alert", "AlertmanagerClient", "matcher"]

TIMEOUT_SECONDS = 10.0
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def matcher(name: str, value: str) -> str:
    """An equality matcher `name="value"` as Alertmanager parses it, with the value quoted."""
    if not _LABEL_NAME.fullmatch(name):
        raise PermanentError(f"`{name[:60]}` is not a valid label name")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'{name}="{escaped}"'


@dataclass(frozen=True)
class Alert:
    """A firing alert as Alertmanager reports it."""

    labels: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=dict)
    starts_at: datetime | None = None
    fingerprint: str = ""

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "unnamed alert")

    @property
    def summary(self) -> str:
        return self.annotations.get("summary") or self.annotations.get("description") or ""

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> Alert:
        starts = raw.get("startsAt")
        return cls(
            labels={str(k): str(v) for k, v in (raw.get("labels") or {}).items()},
            annotations={str(k): str(v) for k, v in (raw.get("annotations") or {}).items()},
            starts_at=_parse_time(starts) if isinstance(starts, str) else None,
            fingerprint=str(raw.get("fingerprint") or ""),
        )


class AlertmanagerClient:
    """Alertmanager's API v2 at `url`, with an optional bearer token (never shown anywhere)."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = TIMEOUT_SECONDS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.shown_url = safe_url(self.url)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AlertmanagerClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def firing(self, matchers: Mapping[str, str]) -> list[Alert]:
        """Active alerts (not silenced, not inhibited) whose labels equal all of `matchers`."""
        params: list[tuple[str, str]] = [
            ("active", "true"),
            ("silenced", "false"),
            ("inhibited", "false"),
        ]
        params += [("filter", matcher(name, value)) for name, value in matchers.items()]
        body = await self._request("GET", "/api/v2/alerts", params=params)
        if not isinstance(body, list):
            raise PermanentError(f"Alertmanager at {self.shown_url} gave an unexpected answer")
        return [Alert.from_api(item) for item in body if isinstance(item, dict)]

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise RetryableError(
                f"Alertmanager at {self.shown_url} did not answer in time", delay=2.0
            ) from exc
        except httpx.TransportError as exc:
            raise RetryableError(
                f"Alertmanager at {self.shown_url} is unreachable ({type(exc).__name__})",
                delay=2.0,
            ) from exc
        status = response.status_code
        if status in (401, 403):
            raise PermanentError(
                f"Alertmanager at {self.shown_url} refused access ({status}): "
                "check OPSBOT_ALERTMANAGER_TOKEN"
            )
        if status == 429 or status >= 500:
            raise RetryableError(
                f"Alertmanager failed ({status}): {_error_text(response)}", delay=2.0
            )
        if status >= 400:
            raise PermanentError(
                f"Alertmanager rejected the request ({status}): {_error_text(response)}"
            )
        try:
            return response.json()
        except ValueError as exc:
            raise PermanentError(
                f"Alertmanager at {self.shown_url} gave an answer opsbot cannot read"
            ) from exc


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or body)[:300]
    return str(body)[:300]


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
