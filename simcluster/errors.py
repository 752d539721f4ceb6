"""API errors as the real API server reports them: a `Status` object with reason and code,
raised anywhere in the simulator and rendered once by the HTTP layer."""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]

REASONS: dict[int, str] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}

CONFLICT_TAIL = (
    "the object has been modified; please apply your changes to the latest version and try again"
)


class ApiError(Exception):
    """One failed API call; `status()` is the body the client receives."""

    def __init__(
        self,
        code: int,
        message: str,
        reason: str | None = None,
        details: JSON | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or REASONS.get(code, "Unknown")
        self.details = details
        self.retry_after = retry_after

    def status(self) -> JSON:
        body: JSON = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(name: str, group: str, plural: str) -> JSON:
    details: JSON = {"kind": plural}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    return details


def qualified(plural: str, group: str) -> str:
    return f"{plural}.{group}" if group else plural


def not_found(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        404, f'{qualified(plural, group)} "{name}" not found', details=_details(name, group, plural)
    )


def already_exists(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        409,
        f'{qualified(plural, group)} "{name}" already exists',
        reason="AlreadyExists",
        details=_details(name, group, plural),
    )


def conflict(plural: str, group: str, name: str, tail: str = CONFLICT_TAIL) -> ApiError:
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {qualified(plural, group)} "{name}": {tail}',
        details=_details(name, group, plural),
    )


def invalid(kind: str, group: str, name: str, field: str, value: Any, why: str) -> ApiError:
    shown = value if isinstance(value, str | int | float | bool) or value is None else "..."
    if isinstance(shown, str):
        shown = f'"{shown}"'
    cause_msg = f"Invalid value: {shown}: {why}"
    details = _details(name, group, kind)
    details["kind"] = kind
    details["causes"] = [{"reason": "FieldValueInvalid", "message": cause_msg, "field": field}]
    return ApiError(
        422, f'{qualified(kind, group)} "{name}" is invalid: {field}: {cause_msg}', details=details
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def internal(message: str) -> ApiError:
    return ApiError(500, f"Internal error occurred: {message}")
