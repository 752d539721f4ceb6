"""What every part of the simulated Velero shares: its API group and namespace, the labels it
writes, how a run advances, and small readers of the objects it handles."""

from __future__ import annotations

import math
from typing import Any

JSON = dict[str, Any]
GROUP, API_VERSION = "velero.io", "velero.io/v1"
NAMESPACE = "velero"  # the one namespace the simulated Velero server watches
STORAGE_LOCATION_LABEL = "velero.io/storage-location"
SCHEDULE_LABEL = "velero.io/schedule-name"
BACKUP_NAME_LABEL = "velero.io/backup-name"
RESTORE_NAME_LABEL = "velero.io/restore-name"
PROGRESS_STEPS = 3  # a backup or restore moves its items in this many controller passes
RUNNING = ("InProgress", "Finalizing", "FinalizingPartiallyFailed")


def step(total: int) -> int:
    """How many items one controller pass moves."""
    return max(1, math.ceil(total / PROGRESS_STEPS))


def omit_zero(status: JSON, **counts: int) -> None:
    """Velero's counters are omitempty: zero is absent."""
    for key, value in counts.items():
        if value:
            status[key] = value
        else:
            status.pop(key, None)


def strings(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def spec_of(obj: JSON) -> JSON:
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


def group_kind(obj: JSON) -> tuple[str, str]:
    return str(obj.get("apiVersion", "")).rpartition("/")[0], str(obj.get("kind", ""))
