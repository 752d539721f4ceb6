"""What clients asked of the API, in RBAC's terms (verb, API group, resource, subresource,
namespace), recorded where requests are routed, so a test can prove which permissions a client
needs without watching the client itself."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from .routing import Route

__all__ = ["Access", "AccessLog", "verb_of"]


@dataclass(frozen=True, order=True)
class Access:
    """One request as an authorizer sees it. `path` is set for non-resource URLs (discovery,
    /version) and empty for resource requests; `namespace` is "" for cluster-wide ones."""

    verb: str
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    path: str = ""

    @property
    def qualified_resource(self) -> str:
        """`resource/subresource`, as RBAC rules name it."""
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


def verb_of(method: str, route: Route, query: dict[str, str]) -> str:
    """The RBAC verb of a resource request, as the API server's request-info resolver says."""
    if method == "GET":
        if route.name is not None:
            return "get"
        return "watch" if query.get("watch") in ("true", "1", "True") else "list"
    if method == "DELETE":
        return "delete" if route.name is not None else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())


@dataclass
class AccessLog:
    """Accesses recorded while at least one `recording()` is open (none otherwise)."""

    _lock: threading.Lock = field(default_factory=threading.Lock)
    _recordings: list[list[Access]] = field(default_factory=list)

    def add(self, access: Access) -> None:
        with self._lock:
            for recording in self._recordings:
                recording.append(access)

    @contextmanager
    def recording(self) -> Iterator[list[Access]]:
        """Every access from here to the end of the block, in arrival order."""
        seen: list[Access] = []
        with self._lock:
            self._recordings.append(seen)
        try:
            yield seen
        finally:
            with self._lock:  # by identity: two recordings may hold equal lists
                self._recordings = [r for r in self._recordings if r is not seen]
