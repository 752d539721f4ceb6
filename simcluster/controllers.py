"""The controller loop: a registry of reconcile functions (one per kind, or once per pass),
the `Ctx` they act through, and the manager that ticks them in a background thread.

Add a controller for a new kind with a decorator::

    @BUILTINS.for_kind("example.com", "Widget")
    def reconcile_widget(ctx: Ctx, widget: JSON) -> None: ...
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from . import selectors
from .behaviours import Scripts
from .clock import SimClock, fmt_time
from .errors import ApiError
from .resources import ResourceRegistry, ResourceType
from .rest import RestApi
from .routing import Route
from .store import Store

JSON = dict[str, Any]
Reconciler = Callable[["Ctx", JSON], None]
PassHook = Callable[["Ctx"], None]
Objects = list[JSON]
log = logging.getLogger(__name__)
IDLE_RECHECK_SECONDS = 1.0


@dataclass(frozen=True)
class ControllerSpec:
    """One registered controller: `fn(ctx, obj)` for each object of (group, kind), or
    `fn(ctx)` once per pass when kind is None. Lower `order` runs first within a pass."""

    name: str
    group: str
    kind: str | None
    fn: Callable[..., None]
    order: int = 50


@dataclass
class ControllerRegistry:
    _specs: list[ControllerSpec] = field(default_factory=list)

    def copy(self) -> ControllerRegistry:
        return ControllerRegistry(list(self._specs))

    def add(self, spec: ControllerSpec) -> ControllerSpec:
        self._specs = [s for s in self._specs if s.name != spec.name] + [spec]
        return spec

    def for_kind(self, group: str, kind: str, *, name: str | None = None, order: int = 50
                 ) -> Callable[[Reconciler], Reconciler]:
        def decorate(fn: Reconciler) -> Reconciler:
            self.add(ControllerSpec(name or fn.__name__, group, kind, fn, order))
            return fn
        return decorate

    def every_pass(self, *, name: str | None = None, order: int = 90
                   ) -> Callable[[PassHook], PassHook]:
        def decorate(fn: PassHook) -> PassHook:
            self.add(ControllerSpec(name or fn.__name__, "", None, fn, order))
            return fn
        return decorate

    def specs(self) -> list[ControllerSpec]:
        return sorted(self._specs, key=lambda s: (s.order, s.name))


BUILTINS = ControllerRegistry()


@dataclass
class Ctx:
    """What a controller may do: read and write through the REST layer, emit events."""

    api: RestApi
    scripts: Scripts
    component: str = "simcluster"

    @property
    def clock(self) -> SimClock:
        return self.api.clock

    @property
    def rng(self) -> random.Random:
        return self.api.rng

    @property
    def types(self) -> ResourceRegistry:
        return self.api.types

    def now(self) -> datetime:
        return self.api.clock.now()

    def rtype(self, group: str, kind: str) -> ResourceType:
        rtype = self.types.by_kind(group, kind)
        if rtype is None:
            raise KeyError(f"unknown kind {group}/{kind}")
        return rtype

    def list(self, group: str, kind: str, namespace: str | None = None,
             selector: JSON | None = None, where: Callable[[JSON], bool] | None = None
             ) -> Objects:
        wanted = selectors.from_object(selector)

        def keep(obj: JSON) -> bool:
            return (selectors.matches_labels(wanted, obj["metadata"].get("labels"))
                    and (where is None or where(obj)))

        return self.api.store.list(self.rtype(group, kind), namespace, keep)

    def get(self, group: str, kind: str, namespace: str, name: str) -> JSON | None:
        return self.api.store.get(self.rtype(group, kind), namespace, name)

    def owned(self, owner: JSON, group: str, kind: str) -> Objects:
        """Objects of (group, kind) whose controller ownerReference is `owner`."""
        uid = owner["metadata"]["uid"]

        def controlled(obj: JSON) -> bool:
            return any(r.get("uid") == uid and r.get("controller")
                       for r in obj["metadata"].get("ownerReferences") or [])

        return self.list(group, kind, owner["metadata"].get("namespace"), where=controlled)

    def adopt(self, owner: JSON, group: str, kind: str) -> None:
        """Take controller ownership of orphans matching the owner's selector, as the real
        controllers do (e.g. ReplicaSets left by an orphaning delete of their Deployment)."""
        selector = (owner.get("spec") or {}).get("selector")
        if not selector:
            return

        def orphan(obj: JSON) -> bool:
            refs = obj["metadata"].get("ownerReferences") or []
            return not any(r.get("controller") for r in refs)

        for obj in self.list(group, kind, owner["metadata"].get("namespace"), selector, orphan):
            obj["metadata"].setdefault("ownerReferences", []).append(owner_ref(owner))
            self.write(obj)

    def create(self, obj: JSON) -> JSON:
        rtype = self._type_of(obj)
        route = Route(rtype.group, rtype.version, rtype.plural,
                      obj["metadata"].get("namespace") if rtype.namespaced else None)
        return self.api.create(route, obj)

    def write(self, obj: JSON) -> JSON:
        return self.api.write(self._type_of(obj), obj)

    def delete(self, obj: JSON) -> None:
        self.api.remove(self._type_of(obj), obj)

    def event(self, involved: JSON, type_: str, reason: str, message: str, *,
              component: str | None = None, count: int = 1, first: datetime | None = None,
              last: datetime | None = None, field_path: str | None = None) -> JSON:
        """Record a core/v1 Event; a repeat of the same event bumps count, as kubelet does."""
        meta = involved["metadata"]
        namespace = meta.get("namespace") or "default"
        ref: JSON = {"apiVersion": involved.get("apiVersion", "v1"), "kind": involved["kind"],
                     "name": meta["name"], "uid": meta["uid"]}
        if meta.get("namespace"):
            ref["namespace"] = meta["namespace"]
        if meta.get("resourceVersion"):
            ref["resourceVersion"] = meta["resourceVersion"]
        if field_path:
            ref["fieldPath"] = field_path
        first_at = fmt_time(first or self.now())
        last_at = fmt_time(last or self.now())
        source = component or self.component
        def same(event: JSON) -> bool:
            return (event.get("involvedObject", {}).get("uid") == meta["uid"]
                    and event.get("reason") == reason and event.get("message") == message
                    and event.get("source", {}).get("component") == source)

        for existing in self.list("", "Event", namespace, where=same):
            existing["count"] = int(existing.get("count", 1)) + count
            existing["lastTimestamp"] = last_at
            return self.write(existing)
        body: JSON = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{self.rng.getrandbits(64):016x}",
                         "namespace": namespace},
            "involvedObject": ref, "reason": reason, "message": message, "type": type_,
            "count": count, "firstTimestamp": first_at, "lastTimestamp": last_at,
            "source": {"component": source} | ({"host": "sim-node-1"}
                                                if source == "kubelet" else {}),
            "reportingComponent": source, "reportingInstance": "",
        }
        return self.create(body)

    def _type_of(self, obj: JSON) -> ResourceType:
        group = obj["apiVersion"].rpartition("/")[0]
        return self.rtype(group, obj["kind"])


def owner_ref(owner: JSON) -> JSON:
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"],
            "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
            "controller": True, "blockOwnerDeletion": True}


class ControllerManager:
    """Runs every controller over the store, one pass per tick, under the store lock."""

    def __init__(self, ctx: Ctx, registry: ControllerRegistry, tick_seconds: float) -> None:
        self.ctx = ctx
        self.registry = registry
        self.tick = tick_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def store(self) -> Store:
        return self.ctx.api.store

    def run_pass(self) -> bool:
        """One reconcile pass; True when it changed anything."""
        with self.store.lock:
            before = self.store.rv
            for spec in self.registry.specs():
                if spec.kind is None:
                    self._guarded(spec, spec.fn, self.ctx)
                    continue
                rtype = self.ctx.types.by_kind(spec.group, spec.kind)
                if rtype is None:
                    continue
                for namespace, name in self.store.names(rtype):
                    fresh = self.store.get(rtype, namespace, name)
                    if fresh is not None:
                        self._guarded(spec, spec.fn, self.ctx, fresh)
            return self.store.rv != before

    def run_until_idle(self, max_passes: int = 500) -> bool:
        return any(not self.run_pass() for _ in range(max_passes))

    def wait_idle(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.run_pass():
                return
        raise TimeoutError(f"simcluster controllers still busy after {timeout}s")

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="simcluster-controllers",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _loop(self) -> None:
        quiet_at: tuple[int, float] | None = None  # (rv, clock offset) after a no-op pass
        last_pass = 0.0
        while not self._stop.wait(self.tick):
            state = (self.store.rv, self.ctx.clock.offset_seconds)
            # Nothing written and the clock not moved: only time-based work (deadlines,
            # minReadySeconds, event TTL) can be due, and once a second is soon enough.
            if state == quiet_at and time.monotonic() - last_pass < IDLE_RECHECK_SECONDS:
                continue
            last_pass = time.monotonic()
            changed = self.run_pass()
            quiet_at = None if changed else (self.store.rv, self.ctx.clock.offset_seconds)

    def _guarded(self, spec: ControllerSpec, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except ApiError as exc:
            log.debug("controller %s: %s", spec.name, exc.message)
        except Exception:
            log.exception("controller %s failed", spec.name)
