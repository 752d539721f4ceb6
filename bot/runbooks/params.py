"""Checking command values against a runbook's typed parameters, before anything runs."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bot.config import Settings
from bot.errors import UsageError
from bot.markup import code
from bot.names import check_dns1123_subdomain, shown
from bot.numbers import parse_duration, whole_number
from bot.runbooks.models import Parameter, Runbook

__all__ = ["coerce_params", "parse_labels"]

_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
# registry[:port]/path[:tag][@digest], per the distribution reference grammar (simplified).
_IMAGE = re.compile(
    r"^(?:[a-z0-9]+(?:[.-][a-z0-9]+)*(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?\Z"
)
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*\Z")
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def parse_labels(name: str, raw: str) -> dict[str, str]:
    """`name=value` words (one per line) as a mapping; label names as Prometheus spells them."""
    labels: dict[str, str] = {}
    for word in (line for line in raw.split("\n") if line.strip()):
        key, eq, value = word.partition("=")
        if not eq or not _LABEL_NAME.match(key):
            raise UsageError(
                f"<{name}>: {code(shown(word))} is not label=value",
                hint="label names are letters, digits and _, e.g. namespace=shop-prod",
            )
        if key in labels:
            raise UsageError(f"<{name}>: label {code(key)} is given twice")
        if len(value) > 1000:
            raise UsageError(f"<{name}>: the value of {code(key)} is too long")
        labels[key] = value
    if len(labels) > 20:
        raise UsageError(f"<{name}>: at most 20 labels")
    return labels


def coerce_params(
    runbook: Runbook, raw: Mapping[str, str], *, settings: Settings, environment: str
) -> dict[str, Any]:
    """Typed values for every parameter (defaults filled), or a UsageError naming the bad one."""
    unknown = sorted(set(raw) - set(runbook.parameters))
    if unknown:
        raise UsageError(
            f"{code(runbook.name)} has no parameter {code(unknown[0])}",
            hint=f"usage: {runbook.usage}",
        )
    values: dict[str, Any] = {}
    for name, spec in runbook.parameters.items():
        if name in raw:
            values[name] = _coerce(name, spec, raw[name], settings, environment,
                                   usage=f"usage: {runbook.usage}")
            if spec.type == "replicas":
                _check_app_bounds(name, values, settings, environment)
        elif spec.is_required:
            raise UsageError(f"missing <{name}>", hint=f"usage: {runbook.usage}")
        else:
            values[name] = spec.default
    return values


def _coerce(name: str, spec: Parameter, raw: str, settings: Settings, env: str, *,
            usage: str) -> Any:
    value: Any
    match spec.type:
        case "int" | "revision" | "replicas":
            value = whole_number(raw, what=f"<{name}>", hint=usage)
            if spec.type == "revision" and value < 1:
                raise UsageError(f"<{name}> must be a revision number (1 or more)")
            if spec.type == "replicas" and value < 0:
                raise UsageError(f"<{name}> cannot be negative")
            _check_bounds(name, spec, value)
        case "bool":
            lowered = raw.lower()
            if lowered not in _TRUE | _FALSE:
                raise UsageError(f"<{name}> must be true or false, not {code(shown(raw))}")
            value = lowered in _TRUE
        case "duration":
            shortest, longest = spec.duration_bounds
            parse_duration(raw, shortest=shortest, longest=longest, what=f"<{name}>",
                           hint=usage)
            value = raw
        case "app":
            value = settings.app(raw, env).name
        case "name":
            value = check_dns1123_subdomain(raw, what=name)
        case "image":
            if not (_TAG.match(raw) or _IMAGE.match(raw)):
                raise UsageError(
                    f"{code(shown(raw))} is not an image reference or tag",
                    hint="give a tag like 1.5.0 or an image like "
                    "registry.example.com/shop/api:1.5.0",
                )
            value = raw
        case "labels":
            value = parse_labels(name, raw)
        case _:
            value = raw
            if len(raw) > 1000:
                raise UsageError(f"<{name}> is too long (at most 1000 characters)")
    if spec.choices is not None and str(value) not in spec.choices:
        raise UsageError(f"<{name}> must be one of: {', '.join(spec.choices)}")
    if spec.pattern is not None and not re.fullmatch(spec.pattern, str(value)):
        raise UsageError(f"<{name}> {code(shown(raw))} does not match the expected form")
    return value


def _check_app_bounds(
    name: str, values: dict[str, Any], settings: Settings, environment: str
) -> None:
    # The app's configured bounds are checked before an execution exists, so nothing runs.
    if not values.get("app"):
        return
    app = settings.app(values["app"], environment)
    bounds, wanted = app.replicas, values[name]
    if not bounds.min <= wanted <= bounds.max:
        raise UsageError(
            f"{app.name} may run {bounds.min} to {bounds.max} replicas in {environment}; "
            f"{wanted} is outside that",
            hint="the bounds are set per app in the configuration (apps.<app>.replicas)",
        )


def _check_bounds(name: str, spec: Parameter, value: int) -> None:
    low, high = spec.number_bounds
    if low is not None and value < low:
        raise UsageError(f"<{name}> must be at least {low}")
    if high is not None and value > high:
        raise UsageError(f"<{name}> must be at most {high}")
