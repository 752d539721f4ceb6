"""Which image a deploy means: a bare tag keeps the app's repository, and a full reference
must come from it, so a chat message cannot point an app at another registry. Every
strategy that sets an image resolves it here."""

from __future__ import annotations

import re

from bot.errors import Refused
from bot.markup import code

__all__ = ["repository_of", "resolve_image"]

_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")


def resolve_image(image: str, *, repository: str | None, current: str) -> str:
    """A bare tag keeps the configured (or current) repository; a full reference must use it."""
    base = repository or repository_of(current)
    if _TAG.match(image) and "/" not in image and ":" not in image:
        return f"{base}:{image}"
    if repository and repository_of(image) != repository:
        raise Refused(
            f"{code(image)} is not from this app's repository {code(repository)}; "
            "deploy a tag, or change apps.<app>.image in the configuration"
        )
    return image


def repository_of(image: str) -> str:
    """`registry:5000/shop/api:1.4.0@sha256:...` -> `registry:5000/shop/api`."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name
