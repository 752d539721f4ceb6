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

import yaml

from . import discovery, patches, protobuf, selectors, tables, watch
from .access import Access, AccessLog, verb_of
from .errors import ApiError, bad_request
from .faults import Faults, fault_error
from .rbac import ADMIN, Attributes, Authorizer, Subject
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
    impersonate_groups: tuple[str, ...] = ()  # every `Impersonate-Group` header, in order

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
    authorizer: Authorizer | None = None  # RBAC; without one the token is all-powerful

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
        subject = self._subject(request)
        if subject is None:
            raise ApiError(401, "Unauthorized")
        if path.startswith("/_sim/") or path == "/_sim":
            if not subject.admin:
                raise ApiError(403, f'User "{subject.user}" cannot use the simulation\'s admin '
                                    "API", reason="Forbidden")
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
        review = self._review(request, route, subject)
        if review is not None:
            return review
        self._authorize(request, route, subject)
        if route.subresource == "token" and route.plural == "serviceaccounts" \
                and request.method == "POST":
            return self._token_request(route)
        return self._resource(request, route)

    def _authorize(self, request: Request, route: Route, subject: Subject) -> None:
        if self.authorizer is None or subject.admin:
            return
        attributes = Attributes(verb_of(request.method, route, request.query), route.group,
                                route.plural, route.subresource or "", route.namespace or "",
                                route.name or "")
        if not self.authorizer.allowed(subject, attributes):
            raise self.authorizer.deny(subject, attributes)

    def _review(self, request: Request, route: Route, subject: Subject) -> Response | None:
        """SelfSubjectAccessReview and SelfSubjectRulesReview (`kubectl auth can-i`): open to
        every authenticated subject, answered for the subject asking, never stored."""
        if route.group != "authorization.k8s.io" or request.method != "POST" \
                or self.authorizer is None:
            return None
        body = request.json() or {}
        spec = body.get("spec") or {}
        if route.plural == "selfsubjectaccessreviews":
            ra = spec.get("resourceAttributes") or {}
            attributes = Attributes(str(ra.get("verb", "")), str(ra.get("group", "")),
                                    str(ra.get("resource", "")), str(ra.get("subresource", "")),
                                    str(ra.get("namespace", "")), str(ra.get("name", "")))
            status: dict[str, Any] = {"allowed": self.authorizer.allowed(subject, attributes)}
        elif route.plural == "selfsubjectrulesreviews":
            rules = self.authorizer.rules_for(subject, str(spec.get("namespace", "")))
            status = {"resourceRules": rules, "nonResourceRules": [
                {"verbs": ["get"], "nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*",
                                                       "/version"]}],
                "incomplete": False}
        else:
            return None
        return Response.of({**body, "apiVersion": "authorization.k8s.io/v1",
                            "metadata": body.get("metadata") or {}, "status": status}, 201)

    def _apply(self, request: Request, route: Route) -> Response:
        """Server-side apply, simplified: the applied configuration creates the object, or is
        merged into it (a JSON merge patch). Field ownership (managedFields, conflicts between
        managers, removing fields a manager stops applying) is not modelled."""
        try:
            body = yaml.safe_load(request.body.decode("utf-8")) if request.body else None
        except (UnicodeDecodeError, yaml.YAMLError) as exc:
            raise bad_request(f"error decoding YAML: {exc}") from exc
        if not isinstance(body, dict):
            raise bad_request("the applied configuration is not an object")
        if route.name is None or body.get("metadata", {}).get("name") not in (None, route.name):
            raise bad_request("the name of the object does not match the name on the URL")
        try:
            self.api.get(route)
        except ApiError as exc:
            if exc.code != 404:
                raise
            created = Route(route.group, route.version, route.plural, route.namespace)
            body.setdefault("metadata", {})["name"] = route.name
            return Response.of(self.api.create(created, body, request.dry_run), 201)
        return Response.of(self.api.patch(route, body, patches.MERGE, request.dry_run))

    def _printed(self, request: Request, obj: JSON) -> Response:
        """JSON, or the Table `kubectl get` asks for (simcluster/tables.py)."""
        if not tables.wants_table(request.headers.get("accept", "")):
            return Response.of(obj)
        kind = str(obj.get("kind", "")).removesuffix("List")
        return Response.of(tables.table(obj, kind, self.api.clock.now()))

    def _token_request(self, route: Route) -> Response:
        assert self.authorizer is not None and route.namespace and route.name
        self.api.get(Route("", "v1", "serviceaccounts", route.namespace, route.name))  # 404s
        token = self.authorizer.mint(route.namespace, route.name)
        return Response.of({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                            "metadata": {"name": route.name, "namespace": route.namespace},
                            "spec": {"audiences": [], "expirationSeconds": 3600},
                            "status": {"token": token,
                                       "expirationTimestamp": "2099-01-01T00:00:00Z"}}, 201)

    def _record(self, request: Request, path: str, route: Route | DiscoveryRoute) -> None:
        if self.accesses is None:
            return
        if isinstance(route, DiscoveryRoute):
            self.accesses.add(Access(request.method.lower(), path=path))
            return
        self.accesses.add(Access(verb_of(request.method, route, request.query), route.group,
                                 route.plural, route.subresource or "", route.namespace or ""))

    def _subject(self, request: Request) -> Subject | None:
        header = request.headers.get("authorization", "")
        if self.authorizer is not None:
            subject = self.authorizer.subject(header)
            if subject is None:
                return None
            return self._impersonated(request, subject)
        scheme, _, value = header.partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(value.strip(), self.token)
        return ADMIN if ok else None

    def _impersonated(self, request: Request, subject: Subject) -> Subject:
        """`kubectl --as USER [--as-group G]`: the request is decided as USER, once the real
        subject may `impersonate` that user (or service account) and each group, as the API
        server's impersonation filter does; otherwise 403, naming what it may not impersonate."""
        user = request.headers.get("impersonate-user")
        groups = request.impersonate_groups
        if user is None:
            if groups:
                raise ApiError(500, "requested [" + ", ".join(
                    f"{{Group {g}}}" for g in groups) + "] without impersonating a user")
            return subject
        assert self.authorizer is not None
        targets: list[Attributes] = []
        sa = user.split(":")
        if len(sa) == 4 and sa[:2] == ["system", "serviceaccount"]:
            targets.append(Attributes("impersonate", "", "serviceaccounts", namespace=sa[2],
                                      name=sa[3]))
            implied: tuple[str, ...] = ("system:serviceaccounts",
                                        f"system:serviceaccounts:{sa[2]}")
        else:
            targets.append(Attributes("impersonate", "", "users", name=user))
            implied = ()
        targets += [Attributes("impersonate", "", "groups", name=g) for g in groups]
        for attributes in targets:
            if not self.authorizer.allowed(subject, attributes):
                what = attributes.resource
                scope = (f'in the namespace "{attributes.namespace}"' if attributes.namespace
                         else "at the cluster scope")
                raise ApiError(403, f'{what} "{attributes.name}" is forbidden: User '
                                    f'"{subject.user}" cannot impersonate resource "{what}" in '
                                    f'API group "" {scope}', reason="Forbidden",
                               details={"name": attributes.name, "kind": what})
        every = tuple(dict.fromkeys((*groups, *implied, "system:authenticated")))
        return Subject(user, every, admin="system:masters" in every)

    def _resource(self, request: Request, route: Route) -> Response:
        method, query = request.method, request.query
        if method == "GET":
            if route.subresource == "log":
                return Response(200, self.api.log(route, _log_query(query)).encode(),
                                "text/plain")
            if route.name is not None:
                return self._printed(request, self.api.get(route))
            if query.get("watch") in ("true", "1", "True"):
                return self._watch(route, query)
            return self._printed(request, self.api.list(route, _list_query(query)))
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
                return self._apply(request, route)
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
