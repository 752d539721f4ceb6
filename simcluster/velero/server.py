"""The simulated Velero server of one SimCluster: it holds the controllers of backups,
restores and downloads under one lock, registers them with the cluster's controllers, and is
what SimCluster's scripting and inspection methods talk to."""

from __future__ import annotations

import threading
from collections.abc import Callable

from ..controllers import ControllerRegistry, Ctx
from . import schedules
from .backups import Backups, reconcile_location
from .common import GROUP, JSON, NAMESPACE
from .downloads import Downloads
from .restores import Restores
from .scripts import OutcomeScript


class Velero:
    """The simulated Velero server of one SimCluster. Its state (scripts, runs in progress and
    the object storage of completed backups) lives here, guarded by its own lock."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.backups = Backups(self._lock)
        self.restores = Restores(self._lock, self.backups)
        self.downloads = Downloads(self._lock, self.backups.contents, lambda: self.base_url())
        self.base_url: Callable[[], str] = lambda: "http://127.0.0.1"  # set by SimCluster

    def install(self, registry: ControllerRegistry) -> None:
        registry.for_kind(GROUP, "BackupStorageLocation", name="velero-storage-location",
                          order=60)(reconcile_location)
        registry.for_kind(GROUP, "Schedule", name="velero-schedule", order=61)(
            schedules.reconcile_schedule)
        registry.for_kind(GROUP, "Backup", name="velero-backup", order=62)(
            self.backups.reconcile)
        registry.for_kind(GROUP, "Restore", name="velero-restore", order=63)(
            self.restores.reconcile)
        registry.for_kind(GROUP, "DownloadRequest", name="velero-download", order=64)(
            self.downloads.reconcile)
        registry.every_pass(name="velero-forget", order=95)(self.forget_deleted)

    # -- scripts and inspection ------------------------------------------------------------

    def script_backup(self, script: OutcomeScript) -> None:
        with self._lock:
            self.backups.scripts.append(script)

    def script_restore(self, script: OutcomeScript) -> None:
        with self._lock:
            self.restores.scripts.append(script)

    def clear_scripts(self) -> None:
        with self._lock:
            self.backups.scripts.clear()
            self.restores.scripts.clear()

    def contents(self, backup_name: str) -> list[JSON] | None:
        return self.backups.contents(backup_name)

    def results(self, restore_name: str) -> JSON | None:
        return self.restores.results(restore_name)

    def download(self, token: str) -> bytes | None:
        return self.downloads.download(token)

    def run_schedule(self, ctx: Ctx, namespace: str, name: str) -> JSON | None:
        return schedules.run_schedule(ctx, namespace, name)

    # -- housekeeping ------------------------------------------------------------------------

    def forget_deleted(self, ctx: Ctx) -> None:
        """A deleted Backup takes its contents with it (as `velero backup delete` does); runs
        and results of deleted objects are dropped."""
        with self._lock:
            if self.backups.holds_nothing() and self.restores.holds_nothing():
                return
            backups = {b["metadata"]["uid"]: b["metadata"]["name"]
                       for b in ctx.list(GROUP, "Backup", NAMESPACE)}
            restores = {r["metadata"]["uid"] for r in ctx.list(GROUP, "Restore", NAMESPACE)}
            self.backups.forget(backups)
            self.restores.forget(restores)
