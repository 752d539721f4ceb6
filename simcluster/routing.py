"""Turn a REST path into what it names (group, version, plural, namespace, name, subresource);
the same parser serves HTTP requests and `SimCluster.get(path)`."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ApiError

CORE_NAMESPACE_SUBRESOURCES = {"status", "finalize"}


@dataclass(frozen=True)
class Route:
    """A resource path. `namespace` is None for cluster-scoped or all-namespaces paths."""

    group: str
    version: str
    plural: str
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


@dataclass(frozen=True)
class DiscoveryRoute:
    """`/api`, `/apis`, `/api/v1`, `/apis/{group}` or `/apis/{group}/{version}`."""

    group: str | None
    version: str | None
    legacy: bool


def not_found_path() -> ApiError:
    return ApiError(404, "the server could not find the requested resource", details={})


def parse(path: str) -> Route | DiscoveryRoute:
    parts = [p for p in path.split("/") if p]
    if not parts or parts[0] not in ("api", "apis"):
        raise not_found_path()
    if parts[0] == "api":
        if len(parts) == 1:
            return DiscoveryRoute(None, None, legacy=True)
        group, version, rest = "", parts[1], parts[2:]
    else:
        if len(parts) == 1:
            return DiscoveryRoute(None, None, legacy=False)
        if len(parts) == 2:
            return DiscoveryRoute(parts[1], None, legacy=False)
        group, version, rest = parts[1], parts[2], parts[3:]
    if not rest:
        return DiscoveryRoute(group, version, legacy=not group)
    if rest[0] == "namespaces" and len(rest) >= 3 and not (
        len(rest) == 3 and rest[2] in CORE_NAMESPACE_SUBRESOURCES and not group
    ):
        namespace, plural, tail = rest[1], rest[2], rest[3:]
    else:
        namespace, plural, tail = None, rest[0], rest[1:]
    if len(tail) > 2:
        raise not_found_path()
    name = tail[0] if tail else None
    sub = tail[1] if len(tail) > 1 else None
    return Route(group, version, plural, namespace, name, sub)
