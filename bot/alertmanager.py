"""The boundary to Alertmanager's API v2 (httpx, async): which alerts fire now, and the silences
opsbot creates, lists and expires. Label names are validated here and values are quoted (filters)
or sent as JSON strings (silences), so user text never becomes matcher syntax."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from bot.errors import NotFound, PermanentError, RetryableError
from bot.lazy import httpx
from bot.markup import code
from bot.prometheus import check_label_name, promql_string, safe_url

__all__ = [
    "Alert",
    "AlertmanagerClient",
    "Silence",
    "SilenceMatcher",
    "check_label_name",
    "check_silence_id",
    "matcher",
]

TIMEOUT_SECONDS = 10.0
# Alertmanager's silence ids are UUIDs; only the canonical form may reach a URL path.
_SILENCE_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

SilenceState = Literal["active", "pending", "expired"]


def check_silence_id(silence_id: str) -> str:
    """The id in canonical form when it is a UUID, else a PermanentError (no request is made)."""
    normal = silence_id.lower()
    if not _SILENCE_ID.fullmatch(normal):
        raise PermanentError(f"{code(silence_id[:60])} is not a silence id (a UUID)")
    return normal


def matcher(name: str, value: str) -> str:
    """An equality matcher `name="value"` as Alertmanager parses it, with the value quoted."""
    return f"{check_label_name(name)}={promql_string(value)}"


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


@dataclass(frozen=True)
class SilenceMatcher:
    """One matcher of a silence; opsbot creates only equality matchers (`name="value"`)."""

    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True

    def __str__(self) -> str:
        op = {(False, True): "=", (False, False): "!=", (True, True): "=~",
              (True, False): "!~"}[(self.is_regex, self.is_equal)]
        return f"{self.name}{op}{promql_string(self.value)}"

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> SilenceMatcher:
        return cls(
            name=str(raw.get("name", "")),
            value=str(raw.get("value", "")),
            is_regex=bool(raw.get("isRegex", False)),
            is_equal=bool(raw.get("isEqual", True)),
        )


@dataclass(frozen=True)
class Silence:
    """A silence as Alertmanager reports it."""

    id: str
    state: str
    matchers: tuple[SilenceMatcher, ...]
    starts_at: datetime | None
    ends_at: datetime | None
    created_by: str
    comment: str

    @property
    def labels(self) -> dict[str, str]:
        """The equality matchers as a mapping (regex and negative matchers left out)."""
        return {m.name: m.value for m in self.matchers if m.is_equal and not m.is_regex}

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> Silence:
        status = raw.get("status")
        starts, ends = raw.get("startsAt"), raw.get("endsAt")
        return cls(
            id=str(raw.get("id", "")),
            state=str(status.get("state", "")) if isinstance(status, dict) else "",
            matchers=tuple(
                SilenceMatcher.from_api(m) for m in raw.get("matchers") or []
                if isinstance(m, dict)
            ),
            starts_at=_parse_time(starts) if isinstance(starts, str) else None,
            ends_at=_parse_time(ends) if isinstance(ends, str) else None,
            created_by=str(raw.get("createdBy", "")),
            comment=str(raw.get("comment", "")),
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

    async def create_silence(
        self,
        matchers: Mapping[str, str],
        *,
        starts_at: datetime,
        ends_at: datetime,
        created_by: str,
        comment: str,
    ) -> str:
        """Silence alerts whose labels equal all of `matchers` from `starts_at` to `ends_at`;
        the new silence's id. Values go to Alertmanager as JSON strings, never as matcher text."""
        if not matchers:
            raise PermanentError("a silence needs at least one matcher")
        body_matchers = [
            {"name": check_label_name(name), "value": value, "isRegex": False, "isEqual": True}
            for name, value in matchers.items()
        ]
        if not any(matchers.values()):
            raise PermanentError("a silence needs at least one matcher with a non-empty value")
        starts, ends = _rfc3339(starts_at), _rfc3339(ends_at)
        if ends_at <= starts_at:
            raise PermanentError("a silence must end after it starts")
        if not created_by.strip() or not comment.strip():
            raise PermanentError("a silence needs its author and a comment")
        body = await self._request(
            "POST",
            "/api/v2/silences",
            creates=True,
            json={
                "matchers": body_matchers,
                "startsAt": starts,
                "endsAt": ends,
                "createdBy": created_by,
                "comment": comment,
            },
        )
        silence_id = body.get("silenceID") if isinstance(body, dict) else None
        if not isinstance(silence_id, str) or not silence_id:
            raise PermanentError(f"Alertmanager at {self.shown_url} gave an unexpected answer")
        return silence_id

    async def silences(
        self,
        matchers: Mapping[str, str] | None = None,
        *,
        states: tuple[SilenceState, ...] = ("active", "pending"),
    ) -> list[Silence]:
        """Silences in `states` with, for each of `matchers`, a matcher on that label whose
        value is exactly the one given; the latest to end first."""
        params = [("filter", matcher(name, value)) for name, value in (matchers or {}).items()]
        body = await self._request("GET", "/api/v2/silences", params=params)
        if not isinstance(body, list):
            raise PermanentError(f"Alertmanager at {self.shown_url} gave an unexpected answer")
        found = [Silence.from_api(item) for item in body if isinstance(item, dict)]
        found = [s for s in found if s.state in states]
        never = datetime.min.replace(tzinfo=UTC)
        return sorted(found, key=lambda s: s.ends_at or never, reverse=True)

    async def expire_silence(self, silence_id: str) -> None:
        """End the silence now; expiring an expired one is not an error."""
        silence_id = check_silence_id(silence_id)
        await self._request(
            "DELETE",
            f"/api/v2/silence/{silence_id}",
            missing=f"Alertmanager at {self.shown_url} has no silence {silence_id}",
        )

    async def _request(
        self, method: str, path: str, *, missing: str | None = None, creates: bool = False,
        **kwargs: Any,
    ) -> Any:
        """The JSON answer (None when empty); `missing` is the NotFound text for an unknown
        object. With `creates`, a timeout is not retried: the object may exist already."""
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            if creates and not isinstance(exc, httpx.ConnectTimeout):
                raise PermanentError(
                    f"Alertmanager at {self.shown_url} did not answer in time; the silence may "
                    "have been created: check its silences before trying again"
                ) from exc
            raise RetryableError(
                f"Alertmanager at {self.shown_url} did not answer in time", delay=2.0
            ) from exc
        except httpx.TransportError as exc:
            raise RetryableError(
                f"Alertmanager at {self.shown_url} is unreachable ({type(exc).__name__})",
                delay=2.0,
            ) from exc
        status = response.status_code
        # Alertmanager before 0.27 answers an unknown silence id with 500 "silence not found".
        if missing and (status == 404 or (
            status == 500 and "not found" in _error_text(response).lower()
        )):
            raise NotFound(missing)
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
        if not response.content.strip():
            return None  # DELETE answers 200 with no body
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


def _rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise PermanentError("silence times must carry a time zone")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
