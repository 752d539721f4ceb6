"""Transport-free request handling: authenticate, apply injected faults, route the path and
call the REST layer, returning a response the HTTP server only has to write out."""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import discovery, patches, protobuf, selectors, watch
from .access import Access, AccessLog, verb_of
from .errors import ApiError, bad_request
from .faults import Faults, fault_error
from .rest import DeleteOptions, ListQuery, LogQuery, RestApi
from .routing import DiscoveryRoute, Route, not_found_path, parse

JSON = dict[str, Any]
PUBLIC = {"/version", "/healthz", "/livez", "/readyz"}
log = logging.getLogger(__name__)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes = b""

    def json(self) -> Any:
        if not self.body:
            return None
        if self.headers.get("content-type", "").startswith(protobuf.MEDIA_TYPE):
            try:
                return protobuf.decode(self.body)
            except protobuf.Undecodable as exc:
                raise ApiError(415, str(exc), reason="UnsupportedMediaType") from exc
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise bad_request(f"couldn't get version/kind; json parse error: {exc}") from exc

    @property
    def dry_run(self) -> bool:
        return self.query.get("dryRun") == "All"


@dataclass
class Response:
    code: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    stream: Iterator[bytes] | None = None

    @classmethod
    def of(cls, payload: Any, code: int = 200) -> Response:
        return cls(code, json.dumps(payload).encode())

    @classmethod
    def error(cls, exc: ApiError) -> Response:
        response = cls.of(exc.status(), exc.code)
        if exc.retry_after is not None:
            response.headers["Retry-After"] = str(exc.retry_after)
        return response


DOWNLOADS = "/_velero/downloads/"


class Handler(Protocol):
    def handle(self, request: Request) -> Response: ...


@dataclass
class ObjectStorage:
    """Velero's signed download URLs, served apart from the API as object storage is: over
    plain HTTP (an in-cluster MinIO, say), where the token in the path is the credential."""

    dispatcher: Dispatcher

    def handle(self, request: Request) -> Response:
        if request.method == "GET" and request.path.startswith(DOWNLOADS):
            return self.dispatcher.handle(request)
        return Response.error(ApiError(404, "object storage serves downloads only"))


@dataclass
class Dispatcher:
    api: RestApi
    faults: Faults
    token: str
    admin: Callable[[Request], Response]
    server_address: Callable[[], str]
    downloads: Callable[[str], bytes | None] | None = None  # Velero's signed URLs
    accesses: AccessLog | None = None  # what authenticated clients asked, for RBAC tests

    def handle(self, request: Request) -> Response:
        try:
            return self._handle(request)
        except ApiError as exc:
            return Response.error(exc)
        except Exception as exc:
            log.exception("simcluster: %s %s failed", request.method, request.path)
            return Response.error(ApiError(500, f"Internal error occurred: {exc}"))

    def _handle(self, request: Request) -> Response:
        path = request.path.rstrip("/") or "/"
        if request.method == "GET" and path in PUBLIC:
            return Response.of(discovery.VERSION) if path == "/version" else Response(
                200, b"ok", "text/plain")
        if request.method == "GET" and path.startswith(DOWNLOADS) and self.downloads:
            # Velero's signed download URLs: the token in the path is the credential.
            found = self.downloads(path[len(DOWNLOADS):])
            if found is None:
                raise ApiError(404, "no such download")
            return Response(200, found, "application/gzip")
        if not self._authorized(request):
            raise ApiError(401, "Unauthorized")
        if path.startswith("/_sim/") or path == "/_sim":
            return self.admin(request)
        fault = self.faults.match(request.method, path)
        if fault is not None:
            if fault.delay_seconds > 0:
                time.sleep(fault.delay_seconds)
            if fault.status is not None:
                raise fault_error(fault, path)
        route = parse(path)
        self._record(request, path, route)
        if isinstance(route, DiscoveryRoute):
            if request.method != "GET":
                raise ApiError(405, "the server does not allow this method on the requested "
                                    "resource")
            return Response.of(discovery.document(route, self.api.types, self.server_address()))
        return self._resource(request, route)

    def _record(self, request: Request, path: str, route: Route | DiscoveryRoute) -> None:
        if self.accesses is None:
            return
        if isinstance(route, DiscoveryRoute):
            self.accesses.add(Access(request.method.lower(), path=path))
            return
        self.accesses.add(Access(verb_of(request.method, route, request.query), route.group,
                                 route.plural, route.subresource or "", route.namespace or ""))

    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip(), self.token)

    def _resource(self, request: Request, route: Route) -> Response:
        method, query = request.method, request.query
        if method == "GET":
            if route.subresource == "log":
                return Response(200, self.api.log(route, _log_query(query)).encode(),
                                "text/plain")
            if route.name is not None:
                return Response.of(self.api.get(route))
            if query.get("watch") in ("true", "1", "True"):
                return self._watch(route, query)
            return Response.of(self.api.list(route, _list_query(query)))
        if method == "POST":
            if route.name is not None:
                raise not_found_path()
            return Response.of(self.api.create(route, request.json(), request.dry_run), 201)
        if method == "PUT":
            if route.name is None:
                raise ApiError(405, "the server does not allow this method on the requested "
                                    "resource")
            return Response.of(self.api.replace(route, request.json(), request.dry_run))
        if method == "PATCH":
            if route.name is None:
                raise ApiError(405, "the server does not allow this method on the requested "
                                    "resource")
            content_type = request.headers.get("content-type", patches.MERGE)
            if content_type.startswith(patches.APPLY):
                return Response.of(self.api.patch(route, None, content_type))
            return Response.of(self.api.patch(route, request.json(), content_type,
                                              request.dry_run))
        if method == "DELETE":
            options = DeleteOptions.parse(request.json(), query)
            if route.name is None:
                return Response.of(self.api.delete_collection(route, _list_query(query),
                                                              options))
            return Response.of(self.api.delete(route, options))
        raise ApiError(405, f"method {method} is not supported")

    def _watch(self, route: Route, query: dict[str, str]) -> Response:
        rtype = self.api.resolve(route)
        labels = selectors.parse_labels(query.get("labelSelector"))
        fields = selectors.parse_fields(query.get("fieldSelector"), rtype.fields, rtype.kind)
        timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
        events = watch.stream(self.api.store, self.api.types.storage_of(rtype), route.namespace,
                              labels, fields, query.get("resourceVersion"), timeout)
        return Response(200, content_type="application/json",
                        stream=(json.dumps(self.api.served_event(rtype, e)).encode() + b"\n"
                                for e in events))


def _int(query: dict[str, str], key: str) -> int | None:
    raw = query.get(key)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise bad_request(f"invalid {key}: {raw!r}") from exc


def _list_query(query: dict[str, str]) -> ListQuery:
    return ListQuery(query.get("labelSelector"), query.get("fieldSelector"),
                     _int(query, "limit"), query.get("continue"))


def _log_query(query: dict[str, str]) -> LogQuery:
    return LogQuery(
        container=query.get("container") or None,
        previous=query.get("previous") in ("true", "1", "True"),
        tail_lines=_int(query, "tailLines"),
        timestamps=query.get("timestamps") in ("true", "1", "True"),
        limit_bytes=_int(query, "limitBytes"),
        since_seconds=_int(query, "sinceSeconds"),
        since_time=query.get("sinceTime") or None,
    )
