"""The object store: every stored object, one global resourceVersion counter and the change
log that watches read. One re-entrant lock guards it all; controllers hold it for a whole pass."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from .resources import ResourceType

JSON = dict[str, Any]
Key = tuple[str, str, str, str, str]  # group, version, plural, namespace, name
Objects = list[JSON]
Typed = list[tuple[ResourceType, JSON]]
Names = list[tuple[str, str]]
T = TypeVar("T")
HISTORY = 5000


@dataclass(frozen=True)
class Change:
    """One entry of the change log: what a watch sends as an event."""

    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    rtype: ResourceType
    namespace: str
    obj: JSON


def clone(value: T) -> T:
    """Deep copy for JSON-shaped data; several times faster than copy.deepcopy."""
    return cast(T, _clone(value))


def _clone(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


def key_of(rtype: ResourceType, namespace: str, name: str) -> Key:
    return (rtype.group, rtype.version, rtype.plural, namespace if rtype.namespaced else "", name)


class Store:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self._objects: dict[Key, JSON] = {}
        self._types: dict[Key, ResourceType] = {}
        self._rv = 1
        self.log: deque[Change] = deque(maxlen=HISTORY)
        self.closed = False
        self._floor = 0  # watches from before this resourceVersion get 410 Gone

    @property
    def rv(self) -> int:
        with self.lock:
            return self._rv

    def oldest_watchable_rv(self) -> int:
        with self.lock:
            if len(self.log) == self.log.maxlen:
                return self.log[0].rv - 1
            return self._floor

    def get(self, rtype: ResourceType, namespace: str, name: str) -> JSON | None:
        with self.lock:
            found = self._objects.get(key_of(rtype, namespace, name))
            return clone(found) if found is not None else None

    def list(self, rtype: ResourceType, namespace: str | None = None,
             where: Callable[[JSON], bool] | None = None) -> Objects:
        """Objects of one type sorted as etcd returns them (namespace, then name); `where`
        filters before copying."""
        with self.lock:
            prefix = (rtype.group, rtype.version, rtype.plural)
            keys = sorted(
                k for k in self._objects
                if k[:3] == prefix and (namespace is None or k[3] == namespace)
            )
            return [clone(self._objects[k]) for k in keys
                    if where is None or where(self._objects[k])]

    def names(self, rtype: ResourceType) -> Names:
        with self.lock:
            prefix = (rtype.group, rtype.version, rtype.plural)
            return sorted((k[3], k[4]) for k in self._objects if k[:3] == prefix)

    def export(self) -> tuple[dict[Key, JSON], dict[Key, ResourceType], int]:
        """Everything needed to start another store in this state (watch history excluded)."""
        with self.lock:
            return clone(self._objects), dict(self._types), self._rv

    def load(self, image: tuple[dict[Key, JSON], dict[Key, ResourceType], int]) -> None:
        objects, types, rv = image
        with self.lock:
            self._objects, self._types, self._rv = clone(objects), dict(types), rv
            self.log.clear()
            self._floor = rv

    def put(self, rtype: ResourceType, obj: JSON) -> JSON:
        """Store (create or replace) and stamp a fresh resourceVersion; returns a copy."""
        with self.lock:
            meta = obj["metadata"]
            key = key_of(rtype, meta.get("namespace", ""), meta["name"])
            kind = "MODIFIED" if key in self._objects else "ADDED"
            self._rv += 1
            stored = clone(obj)
            stored["metadata"]["resourceVersion"] = str(self._rv)
            self._objects[key] = stored
            self._types[key] = rtype
            self._record(kind, rtype, stored)
            return clone(stored)

    def remove(self, rtype: ResourceType, namespace: str, name: str) -> JSON | None:
        with self.lock:
            key = key_of(rtype, namespace, name)
            gone = self._objects.pop(key, None)
            self._types.pop(key, None)
            if gone is None:
                return None
            self._rv += 1
            gone["metadata"]["resourceVersion"] = str(self._rv)
            self._record("DELETED", rtype, gone)
            return gone

    def dependents(self, uid: str) -> Typed:
        """Objects naming `uid` among their ownerReferences."""
        with self.lock:
            out = []
            for key, obj in self._objects.items():
                refs = obj["metadata"].get("ownerReferences") or []
                if any(ref.get("uid") == uid for ref in refs):
                    out.append((self._types[key], clone(obj)))
            return out

    def in_namespace(self, namespace: str) -> Typed:
        with self.lock:
            return [
                (self._types[k], clone(o)) for k, o in self._objects.items()
                if k[3] == namespace and self._types[k].namespaced
            ]

    def snapshot(self) -> dict[str, JSON]:
        """Deep copy keyed "group/version/kind/namespace/name" (core group spelled "core")."""
        with self.lock:
            out: dict[str, JSON] = {}
            for key, obj in sorted(self._objects.items()):
                rtype = self._types[key]
                out[f"{rtype.store_group()}/{rtype.version}/{rtype.kind}/{key[3]}/{key[4]}"] = (
                    clone(obj)
                )
            return out

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.changed.notify_all()

    def _record(self, kind: str, rtype: ResourceType, obj: JSON) -> None:
        namespace = obj["metadata"].get("namespace", "")
        self.log.append(Change(self._rv, kind, rtype, namespace, clone(obj)))
        self.changed.notify_all()
