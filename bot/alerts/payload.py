"""Alertmanager's webhook payload (version 4), parsed strictly where we depend on it and
tolerant of fields newer releases add."""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.storable import Unstorable, json_may_hold_unstorable, unstorable

__all__ = ["AlertItem", "BadPayload", "Notification", "parse_notification", "read_notification"]

_UNSTORABLE: dict[Unstorable, str] = {
    "nul_character": "NUL characters (\\u0000) are not accepted",
    "lone_surrogate": "lone UTF-16 surrogates (\\ud800-\\udfff without their pair) are not "
                      "accepted",
}
_MAX_ALERTS = 1000
_MAX_LABELS = 100
_MAX_VALUE = 10_000
#: The longest number with a fraction or exponent read, and its largest exponent: what a
#: double holds (Python reads a number beyond it as infinity or zero, not as it was sent), well
#: inside what PostgreSQL's `jsonb` keeps (16,383 digits either side) should a payload's
#: values reach one.
_MAX_NUMBER_TEXT = 1000
_MAX_EXPONENT = 308


class BadPayload(ValueError):
    """The body is not a version 4 Alertmanager notification; the message says why, `reason`
    names the kind of fault for metrics."""

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


# Checked by pydantic's core, not per value in Python: a notification carries ten alerts of
# two label sets each.
Labels = Annotated[dict[Annotated[str, Field(max_length=200)],
                        Annotated[str, Field(max_length=_MAX_VALUE)]],
                   Field(max_length=_MAX_LABELS)]


class AlertItem(_Model):
    status: Literal["firing", "resolved"]
    labels: Labels
    annotations: Labels = {}
    starts_at: datetime = Field(alias="startsAt")
    ends_at: datetime | None = Field(default=None, alias="endsAt")
    generator_url: str = Field(default="", alias="generatorURL")
    fingerprint: str = Field(min_length=1, max_length=64)

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def state_key(self) -> str:
        """What makes a notification of this alert new: its fingerprint, status and start."""
        return f"{self.fingerprint}|{self.status}|{self.starts_at.isoformat()}"


class Notification(_Model):
    version: Literal["4"]
    group_key: str = Field(alias="groupKey", min_length=1, max_length=10_000)
    truncated_alerts: int = Field(default=0, ge=0, alias="truncatedAlerts")
    status: Literal["firing", "resolved"]
    receiver: str = ""
    group_labels: dict[str, str] = Field(default={}, alias="groupLabels")
    common_labels: dict[str, str] = Field(default={}, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default={}, alias="commonAnnotations")
    external_url: str = Field(default="", alias="externalURL")
    alerts: list[AlertItem] = Field(max_length=_MAX_ALERTS)


def parse_notification(body: bytes) -> Notification:
    """The notification in `body`, or BadPayload saying what is wrong."""
    return read_notification(body)[1]


class _NotStorable(ValueError):
    """JSON that Python reads and a store would not keep the same on every database."""


def _constant(name: str) -> Any:
    # NaN, Infinity, -Infinity: Python's reader takes them; they are not JSON (RFC 8259), and
    # PostgreSQL refuses them, so the notification could never be stored there.
    raise ValueError(f"{name} is not a JSON value")


def _number(text: str) -> float:
    value = float(text)
    _, _, exponent = text.lower().partition("e")
    if (len(text) > _MAX_NUMBER_TEXT or not math.isfinite(value)
            or (exponent and abs(int(exponent)) > _MAX_EXPONENT)):
        raise _NotStorable(f"a number out of range ({text[:20]}...)" if len(text) > 20
                           else f"a number out of range ({text})")
    return value


# Built once: `json.loads` with hooks builds a decoder (and its scanner) at every call.
_DECODER = json.JSONDecoder(parse_constant=_constant, parse_float=_number)


def _loads(body: bytes) -> Any:
    """`json.loads(body, parse_constant=_constant, parse_float=_number)`: the same encodings
    (UTF-8, 16 or 32, a UTF-8 byte order mark) and the same errors."""
    return _DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))


def read_notification(body: bytes) -> tuple[dict[str, Any], Notification]:
    """The JSON object in `body` (as stored) and the notification it holds, parsed once; or
    BadPayload saying what is wrong."""
    try:
        raw = _loads(body)
    except _NotStorable as exc:
        raise BadPayload(f"the body is not JSON opsbot reads: {exc}", "not_json") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadPayload(f"the body is not JSON: {exc}", "not_json") from None
    except RecursionError:
        raise BadPayload("the body is not JSON opsbot reads: nested too deeply",
                         "not_json") from None
    if not isinstance(raw, dict):
        raise BadPayload("the body is not a JSON object", "not_json")
    # Anywhere in the body, since all of it is stored; checked before any message quotes it.
    refused = unstorable(raw) if json_may_hold_unstorable(body) else None
    if refused is not None:
        raise BadPayload(_UNSTORABLE[refused], refused)
    if raw.get("version") != "4":
        raise BadPayload(f"unsupported payload version {str(raw.get('version'))[:20]!r}; "
                         "opsbot reads version 4", "version")
    try:
        return raw, Notification.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p)[:60] for p in err["loc"])  # label names are anyone's text
        raise BadPayload(f"{where}: {err['msg']}") from None
