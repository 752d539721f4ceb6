"""`backup ...`: Velero Backups, Restores and Schedules of an environment's namespace, made one
command away and followed to the end (progress, warnings, errors) instead of fire-and-forget.

`handlers/__init__.py` lists the modules below for `Registry.builtin()`; this package also
re-exports their handlers, so loading `handlers.backup` itself registers every one."""

from __future__ import annotations

from handlers.backup.backups import (
    BackupCreateParams,
    backup_create,
    backup_describe,
    backup_list,
)
from handlers.backup.common import BackupNameParams, ListParams, go_duration
from handlers.backup.restore import BackupRestoreParams, backup_restore
from handlers.backup.schedules import (
    ScheduleParams,
    backup_pause,
    backup_schedule,
    backup_schedules,
    backup_unpause,
    check_cron,
)
from handlers.backup.verify import (
    BackupVerifyParams,
    VerifyLatestParams,
    backup_verify,
    backup_verify_latest,
    compare,
    resource_list,
)

__all__ = [
    "BackupCreateParams",
    "BackupNameParams",
    "BackupRestoreParams",
    "BackupVerifyParams",
    "ListParams",
    "ScheduleParams",
    "VerifyLatestParams",
    "backup_create",
    "backup_describe",
    "backup_list",
    "backup_pause",
    "backup_restore",
    "backup_schedule",
    "backup_schedules",
    "backup_unpause",
    "backup_verify",
    "backup_verify_latest",
    "check_cron",
    "compare",
    "go_duration",
    "resource_list",
]
