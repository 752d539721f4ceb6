"""DownloadRequests, as Velero hands out what it keeps in object storage: a signed URL (here
a random token on the sim's own server, `/_velero/downloads/<token>`, no bearer needed)."""

from __future__ import annotations

import gzip
import json
import secrets
import threading
from collections.abc import Callable

from ..controllers import Ctx
from .common import JSON, NAMESPACE


class Downloads:
    """The files handed out so far (gzipped, by URL token), guarded by the Velero server's
    lock. `contents` reads a completed backup's items; `base_url` is the sim's address."""

    def __init__(self, lock: threading.RLock, contents: Callable[[str], list[JSON] | None],
                 base_url: Callable[[], str]) -> None:
        self._lock = lock
        self._contents = contents
        self._base_url = base_url
        self._files: dict[str, bytes] = {}  # by URL token: gzipped resource lists

    def reconcile(self, ctx: Ctx, request: JSON) -> None:
        """A BackupResourceList of a stored backup, handed out as Velero does: a signed URL
        to gzipped JSON `{"apps/v1/Deployment": ["ns/name", ...], ...}`. Other targets are
        not modelled."""
        if request["metadata"].get("namespace") != NAMESPACE:
            return
        status = request.get("status") or {}
        if status.get("phase"):
            return
        target = (request.get("spec") or {}).get("target") or {}
        if target.get("kind") != "BackupResourceList":
            return
        items = self._contents(str(target.get("name", "")))
        if items is None:
            return  # Velero leaves it New until the backup is in object storage
        listed: dict[str, list[str]] = {}
        for item in items:
            meta = item.get("metadata") or {}
            key = f"{item.get('apiVersion', 'v1')}/{item.get('kind', '')}"
            name = meta.get("name", "")
            listed.setdefault(key, []).append(
                f"{meta['namespace']}/{name}" if meta.get("namespace") else name)
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._files[token] = gzip.compress(json.dumps(listed, sort_keys=True).encode())
        request["status"] = {"phase": "Processed",
                             "downloadURL": f"{self._base_url()}/_velero/downloads/{token}",
                             "expiration": ctx.clock.stamp(600)}
        ctx.write(request)

    def download(self, token: str) -> bytes | None:
        with self._lock:
            return self._files.get(token)
