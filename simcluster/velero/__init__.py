"""A Velero server for the simulated cluster, so backup runbooks can be exercised end to end:
Backups record copies of namespaced objects in simulated object storage (held by the server,
never in the cluster), Restores create them again, Schedules are validated and fired on
request, DownloadRequests hand out a backup's resource list. Phases, progress, counts and
validation messages follow Velero's controllers; tests script the backups and restores that
should fail or hang. One `Velero` per SimCluster (`install` registers it).

    server.py         Velero: one lock, the controllers registered, scripting and inspection
    backups.py        Backup and BackupStorageLocation controllers, the object storage
    restores.py       Restore controller and its results
    restore_items.py  what a restore creates from a backed-up object, and in what order
    schedules.py      Schedule validation, run_schedule
    downloads.py      DownloadRequest signed URLs
    scripts.py        scripted outcomes (OutcomeScript)
    selection.py      included/excluded namespaces, resources and label selectors
    cron.py           Go durations and cron expressions, parsed as Velero does
    common.py         group, namespace, labels and helpers they all share
"""

from __future__ import annotations

from .common import NAMESPACE
from .scripts import DEFAULT_FAILURE, OUTCOMES, Outcome, OutcomeScript, parse_outcome
from .server import Velero

__all__ = [
    "DEFAULT_FAILURE",
    "NAMESPACE",
    "OUTCOMES",
    "Outcome",
    "OutcomeScript",
    "Velero",
    "parse_outcome",
]
