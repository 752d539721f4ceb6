"""Watch streams (`?watch=true`): ADDED/MODIFIED/DELETED events from the store's change log,
from a resourceVersion or starting with the current state, until timeoutSeconds."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from . import selectors
from .resources import ResourceType
from .store import Store

JSON = dict[str, Any]
DEFAULT_TIMEOUT = 1800.0


def stream(store: Store, rtype: ResourceType, namespace: str | None,
           labels: selectors.LabelSelector, fields: selectors.FieldSelector,
           resource_version: str | None, timeout: float | None) -> Iterator[JSON]:
    deadline = time.monotonic() + (timeout if timeout and timeout > 0 else DEFAULT_TIMEOUT)

    def wanted(obj: JSON) -> bool:
        return ((namespace is None or obj["metadata"].get("namespace") == namespace)
                and selectors.matches_labels(labels, obj["metadata"].get("labels"))
                and selectors.matches_fields(fields, obj))

    with store.lock:
        if resource_version in (None, "", "0"):
            last = store.rv
            initial = [o for o in store.list(rtype, namespace) if wanted(o)]
        else:
            try:
                last = int(str(resource_version))
            except ValueError:
                last = -1
            initial = []
            if last < store.oldest_watchable_rv() or last < 0:
                yield _gone(resource_version, store.rv)
                return
    for obj in initial:
        yield {"type": "ADDED", "object": obj}
    while True:
        batch: list[JSON] = []
        with store.lock:
            while not store.closed and store.rv <= last:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                store.changed.wait(min(remaining, 1.0))
            if store.closed:
                return
            for change in list(store.log):
                if change.rv <= last:
                    continue
                last = change.rv
                same_type = (change.rtype.group, change.rtype.version, change.rtype.plural) == (
                    rtype.group, rtype.version, rtype.plural)
                if same_type and wanted(change.obj):
                    batch.append({"type": change.type, "object": change.obj})
            last = max(last, store.rv)
        yield from batch
        if time.monotonic() >= deadline:
            return


def _gone(requested: str | None, current: int) -> JSON:
    return {"type": "ERROR", "object": {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": f"too old resource version: {requested} ({current})",
        "reason": "Expired", "code": 410,
    }}
