"""Validation of names that reach the Kubernetes API, so chat text never shapes a URL path."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

from bot.errors import UsageError
from bot.markup import code

__all__ = [
    "check_dns1123_label",
    "check_dns1123_subdomain",
    "closest",
    "is_dns1123_label",
    "is_dns1123_subdomain",
    "shown",
]

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")


def is_dns1123_label(value: str) -> bool:
    # fullmatch: `$` alone would accept a trailing newline ("shop-api\n").
    return len(value) <= 63 and bool(_LABEL.fullmatch(value))


def is_dns1123_subdomain(value: str) -> bool:
    return len(value) <= 253 and bool(_SUBDOMAIN.fullmatch(value))


def check_dns1123_label(value: str, *, what: str = "name") -> str:
    """Return `value` if it is a valid RFC 1123 label (namespace, app), else raise UsageError."""
    if not is_dns1123_label(value):
        raise UsageError(
            f"{code(shown(value))} is not a valid {what}",
            hint="use at most 63 lowercase letters, digits and '-', starting and ending "
            "with a letter or digit",
        )
    return value


def check_dns1123_subdomain(value: str, *, what: str = "name") -> str:
    """Return `value` if it is a valid RFC 1123 subdomain (most object names), else raise."""
    if not is_dns1123_subdomain(value):
        raise UsageError(
            f"{code(shown(value))} is not a valid {what}",
            hint="use lowercase letters, digits, '-' and '.', at most 253 characters",
        )
    return value


def closest(name: str, candidates: Iterable[str], *, n: int = 2) -> list[str]:
    """Close matches for a mistyped name, best first."""
    return difflib.get_close_matches(name, sorted(set(candidates)), n=n, cutoff=0.5)


def shown(value: str) -> str:
    """A mistyped user value short enough to quote back in a one-line error: unprintable
    characters (a newline, a control character) become `?`, a long one is cut with `...`.
    Markup characters stay: the front ends show every value as typed."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in value)
    return cleaned if len(cleaned) <= 40 else cleaned[:37] + "..."
