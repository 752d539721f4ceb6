"""REST semantics over the store (conflicts, subresources, dry-run, cascading delete); the
HTTP layer, the controllers and the seed all write through it, so the world stays consistent."""

from __future__ import annotations

import base64
import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import defaults, hpa, patches, selectors
from .clock import SimClock
from .errors import ApiError, already_exists, bad_request, conflict, invalid, not_found
from .resources import ResourceRegistry, ResourceType, guess_kind
from .routing import Route, not_found_path
from .store import Store, clone

JSON = dict[str, Any]
NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
BUILTIN_GROUPS = {"", "apps", "coordination.k8s.io", "autoscaling", "batch", "storage.k8s.io",
                  "networking.k8s.io"}
LogReader = Callable[[JSON, "LogQuery"], str]
Objects = list[JSON]
# Kinds served in more than one version: (group, kind) -> convert(obj, version).
CONVERTERS: dict[tuple[str, str], Callable[[JSON, str], JSON]] = {
    (hpa.GROUP, hpa.KIND): hpa.convert,
}


@dataclass(frozen=True)
class LogQuery:
    container: str | None = None
    previous: bool = False
    tail_lines: int | None = None
    timestamps: bool = False
    limit_bytes: int | None = None
    since_seconds: int | None = None
    since_time: str | None = None  # RFC 3339


@dataclass
class ListQuery:
    label_selector: str | None = None
    field_selector: str | None = None
    limit: int | None = None
    continue_token: str | None = None


@dataclass
class DeleteOptions:
    propagation: str = "Background"
    precondition_uid: str | None = None
    precondition_rv: str | None = None
    dry_run: bool = False

    @classmethod
    def parse(cls, body: Any, query: dict[str, str]) -> DeleteOptions:
        body = body if isinstance(body, dict) else {}
        pre = body.get("preconditions") or {}
        policy = query.get("propagationPolicy") or body.get("propagationPolicy")
        if policy is None and body.get("orphanDependents") is True:
            policy = "Orphan"
        dry = query.get("dryRun") == "All" or "All" in (body.get("dryRun") or [])
        return cls(policy or "Background", pre.get("uid"), pre.get("resourceVersion"), dry)


@dataclass
class RestApi:
    store: Store
    types: ResourceRegistry
    clock: SimClock
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    read_log: LogReader | None = None

    # -- resolution -------------------------------------------------------------------

    def resolve(self, route: Route, for_write: bool = False, kind: str | None = None
                ) -> ResourceType:
        rtype = self.types.lookup(route.group, route.version, route.plural)
        if rtype is None:
            if route.group in BUILTIN_GROUPS or not for_write:
                raise not_found_path()
            rtype = self.types.ensure_custom(route.group, route.version, route.plural,
                                             route.namespace is not None, kind)
        elif rtype.custom and kind and for_write:
            rtype = self.types.ensure_custom(route.group, route.version, route.plural,
                                             rtype.namespaced, kind)
        if route.namespace is not None and not rtype.namespaced:
            raise not_found_path()
        if route.namespace is None and rtype.namespaced and route.name is not None:
            raise not_found_path()
        return rtype

    def unknown_custom(self, route: Route) -> bool:
        return (self.types.lookup(route.group, route.version, route.plural) is None
                and route.group not in BUILTIN_GROUPS)

    # -- reads ------------------------------------------------------------------------

    def get(self, route: Route) -> JSON:
        rtype = self.resolve(route)
        obj = self._existing(self.types.storage_of(rtype), route)
        if route.subresource == "scale":
            return self._scale_view(rtype, obj)
        self._check_status_path(rtype, route)
        return self.served(rtype, obj)

    def list(self, route: Route, query: ListQuery) -> JSON:
        if self.unknown_custom(route):
            kind = guess_kind(route.plural)
            items: Objects = []
            api_version = f"{route.group}/{route.version}"
        else:
            rtype = self.resolve(route)
            kind, api_version = rtype.kind, rtype.api_version
            items = self.select(rtype, route.namespace, query)
        body: JSON = {
            "kind": f"{kind}List",
            "apiVersion": api_version,
            "metadata": {"resourceVersion": str(self.store.rv)},
            "items": items,
        }
        if query.limit or query.continue_token:
            start = _decode_continue(query.continue_token)
            end = start + query.limit if query.limit else len(items)
            body["items"] = items[start:end]
            if end < len(items):
                body["metadata"]["continue"] = _encode_continue(end)
                body["metadata"]["remainingItemCount"] = len(items) - end
        return body

    def select(self, rtype: ResourceType, namespace: str | None, query: ListQuery) -> Objects:
        labels = selectors.parse_labels(query.label_selector)
        fields = selectors.parse_fields(query.field_selector, rtype.fields, rtype.kind)
        return [
            self.served(rtype, obj) for obj in self.store.list(self.types.storage_of(rtype),
                                                               namespace)
            if selectors.matches_labels(labels, obj["metadata"].get("labels"))
            and selectors.matches_fields(fields, obj)
        ]

    def log(self, route: Route, query: LogQuery) -> str:
        rtype = self.resolve(route)
        if rtype.kind != "Pod" or self.read_log is None:
            raise not_found_path()
        return self.read_log(self._existing(rtype, route), query)

    # -- writes -----------------------------------------------------------------------

    def create(self, route: Route, body: Any, dry_run: bool = False) -> JSON:
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be a JSON object")
        rtype = self.resolve(route, for_write=True, kind=body.get("kind"))
        if route.name is not None or route.subresource is not None:
            raise ApiError(405, "the server does not allow this method on the requested resource")
        stored, body = self._incoming(rtype, body)
        with self.store.lock:
            obj = self._prepare_new(stored, route, clone(body))
            if dry_run:
                return self.served(rtype, obj)
            return self.served(rtype, self.store.put(stored, obj))

    def replace(self, route: Route, body: Any, dry_run: bool = False) -> JSON:
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be a JSON object")
        # A subresource body is another kind (Scale): it must not rename a custom kind.
        kind = None if route.subresource else body.get("kind")
        rtype = self.resolve(route, for_write=True, kind=kind)
        stored, body = self._incoming(rtype, body)
        with self.store.lock:
            current = self._existing(stored, route)
            return self.served(rtype, self._replace(stored, route, current, body, dry_run))

    def patch(self, route: Route, body: Any, content_type: str, dry_run: bool = False) -> JSON:
        rtype = self.resolve(route, for_write=True)
        media = content_type.split(";")[0].strip().lower()
        if media == patches.STRATEGIC and rtype.custom:
            raise ApiError(415, "the body of the request was in an unknown format - accepted "
                                f"media types include: {patches.JSON_PATCH}, {patches.MERGE}, "
                                f"{patches.APPLY}", reason="UnsupportedMediaType")
        stored = self.types.storage_of(rtype)
        with self.store.lock:
            current = self._existing(stored, route)
            scale = route.subresource == "scale"
            base = self._scale_view(rtype, current) if scale else self.served(rtype, current)
            patched = patches.apply_patch(base, body, content_type)
            if not isinstance(patched, dict):
                raise bad_request("the patch did not produce an object")
            if not scale:
                _, patched = self._incoming(rtype, patched)
            return self.served(rtype, self._replace(stored, route, current, patched, dry_run))

    def delete(self, route: Route, options: DeleteOptions) -> JSON:
        rtype = self.resolve(route)
        if route.name is None or route.subresource is not None:
            raise ApiError(405, "the server does not allow this method on the requested resource")
        stored = self.types.storage_of(rtype)
        with self.store.lock:
            current = self._existing(stored, route)
            meta = current["metadata"]
            if options.precondition_uid and options.precondition_uid != meta["uid"]:
                raise conflict(rtype.plural, rtype.group, meta["name"],
                               f"Precondition failed: UID in precondition: "
                               f"{options.precondition_uid}, UID in object meta: {meta['uid']}")
            if options.precondition_rv and options.precondition_rv != meta["resourceVersion"]:
                raise conflict(rtype.plural, rtype.group, meta["name"],
                               f"Precondition failed: ResourceVersion in precondition: "
                               f"{options.precondition_rv}, ResourceVersion in object meta: "
                               f"{meta['resourceVersion']}")
            if not options.dry_run:
                self.remove(stored, current, options.propagation)
            return self._deleted_reply(rtype, self.served(rtype, current))

    def delete_collection(self, route: Route, query: ListQuery, options: DeleteOptions) -> JSON:
        rtype = self.resolve(route)
        with self.store.lock:
            doomed = self.select(rtype, route.namespace, query)
            stored = self.types.storage_of(rtype)
            if not options.dry_run:
                for obj in doomed:
                    found = self.store.get(stored, obj["metadata"].get("namespace", ""),
                                           obj["metadata"]["name"])
                    if found is not None:
                        self.remove(stored, found, options.propagation)
            return {"kind": f"{rtype.kind}List", "apiVersion": rtype.api_version,
                    "metadata": {"resourceVersion": str(self.store.rv)}, "items": doomed}

    def remove(self, rtype: ResourceType, obj: JSON, propagation: str = "Background") -> None:
        """Delete now and garbage-collect dependents (foreground is treated as background)."""
        meta = obj["metadata"]
        if self.store.remove(rtype, meta.get("namespace", ""), meta["name"]) is None:
            return
        if rtype.kind == "Namespace" and not rtype.group:
            for dep_type, dep in self.store.in_namespace(meta["name"]):
                self.remove(dep_type, dep, "Background")
        for dep_type, dep in self.store.dependents(meta["uid"]):
            refs = [r for r in dep["metadata"].get("ownerReferences", [])
                    if r.get("uid") != meta["uid"]]
            if propagation == "Orphan" or refs:
                dep["metadata"]["ownerReferences"] = refs
                if not refs:
                    del dep["metadata"]["ownerReferences"]
                self.store.put(dep_type, dep)
            else:
                self.remove(dep_type, dep, propagation)

    def write(self, rtype: ResourceType, obj: JSON) -> JSON:
        """Controller-side full write (spec, metadata and status) without rv checks.
        Unchanged objects are not rewritten, so converged controllers cause no churn."""
        with self.store.lock:
            meta = obj["metadata"]
            current = self.store.get(rtype, meta.get("namespace", ""), meta["name"])
            if current is None:
                raise not_found(rtype.plural, rtype.group, meta["name"])
            new = clone(obj)
            new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            self._keep_identity(new, current)
            defaults.apply_defaults(rtype, new)
            self._bump_generation(rtype, new, current)
            if new == current:
                return current
            return self.store.put(rtype, new)

    # -- versions ---------------------------------------------------------------------

    def served(self, rtype: ResourceType, obj: JSON) -> JSON:
        """A stored object as the version `rtype` serves (itself for most kinds)."""
        if not rtype.storage_version or obj.get("kind") != rtype.kind:
            return obj
        return CONVERTERS[(rtype.group, rtype.kind)](obj, rtype.version)

    def served_event(self, rtype: ResourceType, event: JSON) -> JSON:
        if event.get("type") == "ERROR":
            return event
        return {**event, "object": self.served(rtype, event["object"])}

    def _incoming(self, rtype: ResourceType, body: JSON) -> tuple[ResourceType, JSON]:
        """The type to store as and the body converted to it; kind and apiVersion are checked
        against the served version first, as the API server decodes before converting."""
        stored = self.types.storage_of(rtype)
        if stored is rtype:
            return rtype, body
        kind, api_version = body.get("kind"), body.get("apiVersion")
        if kind and kind != rtype.kind:
            raise bad_request(f"the kind in the data ({kind}) does not match the expected kind "
                              f"({rtype.kind})")
        if api_version and api_version != rtype.api_version:
            raise bad_request(f"the API version in the data ({api_version}) does not match the "
                              f"expected API version ({rtype.api_version})")
        body = {**body, "kind": rtype.kind, "apiVersion": rtype.api_version}
        return stored, CONVERTERS[(rtype.group, rtype.kind)](body, stored.version)

    # -- internals --------------------------------------------------------------------

    def _existing(self, rtype: ResourceType, route: Route) -> JSON:
        obj = self.store.get(rtype, route.namespace or "", route.name or "")
        if obj is None:
            raise not_found(rtype.plural, rtype.group, route.name or "")
        return obj

    def _prepare_new(self, rtype: ResourceType, route: Route, obj: JSON) -> JSON:
        kind = obj.get("kind")
        if kind and kind != rtype.kind:
            raise bad_request(f"the kind in the data ({kind}) does not match the expected kind "
                              f"({rtype.kind})")
        api_version = obj.get("apiVersion")
        if api_version and api_version != rtype.api_version:
            raise bad_request(f"the API version in the data ({api_version}) does not match the "
                              f"expected API version ({rtype.api_version})")
        obj["kind"], obj["apiVersion"] = rtype.kind, rtype.api_version
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if rtype.namespaced:
            namespace = route.namespace or meta.get("namespace") or ""
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise bad_request("the namespace of the provided object does not match the "
                                  "namespace sent on the request")
            meta["namespace"] = namespace
            if self.store.get(self.namespace_type, "", namespace) is None:
                raise not_found("namespaces", "", namespace)
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise invalid(rtype.kind, rtype.group, "", "metadata.name", None,
                              "name or generateName is required")
            meta["name"] = meta["generateName"] + self.random_suffix()
        if self.store.get(rtype, meta.get("namespace", ""), meta["name"]) is not None:
            raise already_exists(rtype.plural, rtype.group, meta["name"])
        for transient in ("resourceVersion", "deletionTimestamp", "managedFields", "selfLink"):
            meta.pop(transient, None)
        meta["uid"] = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        meta["creationTimestamp"] = self.clock.stamp()
        if rtype.bumps_generation:
            meta["generation"] = 1
        if rtype.status_subresource and rtype.kind != "Namespace":
            obj.pop("status", None)
        defaults.apply_defaults(rtype, obj)
        defaults.validate(rtype, obj, None)
        return obj

    @property
    def namespace_type(self) -> ResourceType:
        rtype = self.types.lookup("", "v1", "namespaces")
        assert rtype is not None
        return rtype

    def random_suffix(self, length: int = 5) -> str:
        return "".join(self.rng.choice(NAME_CHARS) for _ in range(length))

    def _replace(self, rtype: ResourceType, route: Route, current: JSON, body: JSON,
                 dry_run: bool) -> JSON:
        name = current["metadata"]["name"]
        meta = body.get("metadata") or {}
        if meta.get("name") and meta["name"] != name:
            raise bad_request(f"the name of the object ({meta['name']}) does not match the name "
                              f"on the URL ({name})")
        if rtype.namespaced and meta.get("namespace") and meta["namespace"] != route.namespace:
            raise bad_request("the namespace of the provided object does not match the namespace "
                              "sent on the request")
        sent_rv = meta.get("resourceVersion")
        if sent_rv and str(sent_rv) != current["metadata"]["resourceVersion"]:
            raise conflict(rtype.plural, rtype.group, name)
        if route.subresource == "scale":
            new = self._apply_scale(rtype, current, body)
        elif route.subresource == "status":
            self._check_status_path(rtype, route)
            new = clone(current)
            if "status" in body:
                new["status"] = clone(body["status"])
            else:
                new.pop("status", None)
        elif route.subresource is None:
            new = clone(body)
            new["kind"], new["apiVersion"] = rtype.kind, rtype.api_version
            new.setdefault("metadata", {})
            if rtype.status_subresource:
                if "status" in current:
                    new["status"] = clone(current["status"])
                else:
                    new.pop("status", None)
        else:
            raise not_found_path()
        self._keep_identity(new, current)
        defaults.apply_defaults(rtype, new)
        defaults.validate(rtype, new, current)
        self._bump_generation(rtype, new, current)
        new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        stored = new if new == current or dry_run else self.store.put(rtype, new)
        return self._scale_view(rtype, stored) if route.subresource == "scale" else stored

    def _check_status_path(self, rtype: ResourceType, route: Route) -> None:
        if route.subresource is None:
            return
        if route.subresource != "status" or not (rtype.status_subresource or rtype.custom):
            raise not_found_path()

    def _keep_identity(self, new: JSON, current: JSON) -> None:
        meta, old = new.setdefault("metadata", {}), current["metadata"]
        for key in ("name", "namespace", "uid", "creationTimestamp", "generation"):
            if key in old:
                meta[key] = old[key]
            else:
                meta.pop(key, None)
        for transient in ("managedFields", "selfLink"):
            meta.pop(transient, None)

    def _bump_generation(self, rtype: ResourceType, new: JSON, current: JSON) -> None:
        if rtype.bumps_generation and new.get("spec") != current.get("spec"):
            new["metadata"]["generation"] = int(current["metadata"].get("generation", 1)) + 1

    def _scale_view(self, rtype: ResourceType, obj: JSON) -> JSON:
        if not rtype.scale_subresource:
            raise not_found_path()
        meta = obj["metadata"]
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        if rtype.scale_paths is None:
            replicas, current = spec.get("replicas", 0), status.get("replicas", 0)
            selector = selectors.to_string(spec.get("selector"))
        else:  # a CRD's scale: its declared paths; missing values read as 0 and ""
            paths = rtype.scale_paths
            replicas = _at_path(obj, paths.spec_replicas) or 0
            current = _at_path(obj, paths.status_replicas) or 0
            selector = (_at_path(obj, paths.label_selector) if paths.label_selector else "") or ""
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in
                         ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                         if k in meta},
            "spec": {"replicas": replicas},
            "status": {"replicas": current, "selector": selector},
        }

    def _apply_scale(self, rtype: ResourceType, current: JSON, scale: JSON) -> JSON:
        replicas = (scale.get("spec") or {}).get("replicas", 0)
        if not isinstance(replicas, int) or replicas < 0:
            raise invalid("Scale", "autoscaling", current["metadata"]["name"], "spec.replicas",
                          replicas, "must be greater than or equal to 0")
        new = clone(current)
        path = rtype.scale_paths.spec_replicas if rtype.scale_paths else ".spec.replicas"
        *parents, leaf = path.strip(".").split(".")
        target = new
        for key in parents:
            target = target.setdefault(key, {})
        target[leaf] = replicas
        return new

    def _deleted_reply(self, rtype: ResourceType, obj: JSON) -> JSON:
        meta = obj["metadata"]
        if rtype.kind in ("Pod", "Namespace") and not rtype.group:
            gone = clone(obj)
            gone["metadata"]["deletionTimestamp"] = self.clock.stamp()
            if rtype.kind == "Namespace":
                gone.setdefault("status", {})["phase"] = "Terminating"
            else:
                gone["metadata"]["deletionGracePeriodSeconds"] = 0
            return gone
        details: JSON = {"name": meta["name"], "kind": rtype.plural, "uid": meta["uid"]}
        if rtype.group:
            details["group"] = rtype.group
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": details}


def _at_path(obj: JSON, path: str) -> Any:
    """The value at a CRD JSON path like `.status.selector`, or None."""
    value: Any = obj
    for key in path.strip(".").split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _encode_continue(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"start": offset}).encode()).decode()


def _decode_continue(token: str | None) -> int:
    if not token:
        return 0
    try:
        return int(json.loads(base64.urlsafe_b64decode(token.encode()))["start"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ApiError(410, "The provided continue parameter is too old to display a consistent "
                            "list result.", reason="Expired") from exc
