"""Fault injection: make matching requests fail with a real-looking Status, or stall first,
so handlers' retry and error paths can be exercised against the simulated cluster."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

from .errors import CONFLICT_TAIL, ApiError
from .routing import Route, parse

JSON = dict[str, Any]


@dataclass
class FaultHandle:
    """One injected fault. `times=None` means until cleared; `hits` counts matches."""

    id: int
    method: str | None
    path: re.Pattern[str]
    status: int | None
    times: int | None
    delay_seconds: float
    message: str | None
    hits: int = 0
    active: bool = True

    @property
    def remaining(self) -> int | None:
        return None if self.times is None else max(self.times - self.hits, 0)

    def cancel(self) -> None:
        self.active = False

    def describe(self) -> JSON:
        return {"id": self.id, "method": self.method, "path": self.path.pattern,
                "status": self.status, "times": self.times, "hits": self.hits,
                "delay_seconds": self.delay_seconds, "active": self.active}


@dataclass
class Faults:
    _handles: list[FaultHandle] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _next: int = 1

    def inject(self, method: str | None = None, path: str = ".*", status: int | None = 500,
               times: int | None = 1, delay_seconds: float = 0.0,
               message: str | None = None) -> FaultHandle:
        """Requests whose method matches (None = any) and whose URL path matches `path`
        (re.search, query string excluded) get `status` as a Status error, after sleeping
        `delay_seconds`; with status None they are only delayed, then served normally."""
        with self._lock:
            handle = FaultHandle(self._next, method.upper() if method else None,
                                 re.compile(path), status, times, delay_seconds, message)
            self._next += 1
            self._handles.append(handle)
            return handle

    def clear(self) -> None:
        with self._lock:
            for handle in self._handles:
                handle.active = False
            self._handles.clear()

    def list(self) -> list[FaultHandle]:
        with self._lock:
            return [h for h in self._handles if h.active]

    def match(self, method: str, path: str) -> FaultHandle | None:
        with self._lock:
            for handle in self._handles:
                if not handle.active or (handle.method and handle.method != method):
                    continue
                if not handle.path.search(path):
                    continue
                handle.hits += 1
                if handle.times is not None and handle.hits >= handle.times:
                    handle.active = False
                return handle
        return None


def fault_error(handle: FaultHandle, path: str) -> ApiError:
    code = handle.status or 500
    route: Route | None = None
    try:
        parsed = parse(path)
        route = parsed if isinstance(parsed, Route) else None
    except ApiError:
        route = None
    plural = route.plural if route else ""
    group = route.group if route else ""
    name = route.name or "" if route else ""
    qualified = f"{plural}.{group}" if group else plural
    if handle.message:
        message = handle.message
    elif code == 409 and route is not None:
        message = f'Operation cannot be fulfilled on {qualified} "{name}": {CONFLICT_TAIL}'
    elif code == 404 and route is not None:
        message = f'{qualified} "{name}" not found'
    elif code == 429:
        message = "Too many requests, please try again later."
    elif code >= 500:
        message = "Internal error occurred: injected fault"
    else:
        message = "injected fault"
    details: JSON | None = None
    if route is not None:
        details = {"name": name, "kind": plural} | ({"group": group} if group else {})
    return ApiError(code, message, details=details, retry_after=1 if code == 429 else None)
