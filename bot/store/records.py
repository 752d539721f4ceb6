"""Plain, immutable views of stored executions and locks handed to the rest of the bot.

Callers never see ORM objects, so nothing they do can lazily hit the database
from another thread or after the session is gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["EXECUTION_FINAL_STATUSES", "ExecutionRecord", "LockInfo", "StepRecord"]

#: Statuses ``finish_execution`` accepts; ``running`` is the only other one.
EXECUTION_FINAL_STATUSES = frozenset({"succeeded", "failed", "refused", "interrupted"})


@dataclass(frozen=True)
class StepRecord:
    index: int
    name: str
    handler: str
    status: str
    summary: str | None
    output: str | None
    error: str | None
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class ExecutionRecord:
    id: str
    runbook: str
    source: str
    actor: str
    command: str
    environment: str | None
    target: str | None
    params: dict[str, Any]
    dry_run: bool
    request_id: str | None
    channel: str | None
    ts: str | None
    status: str
    summary: str | None
    started_at: datetime
    finished_at: datetime | None
    steps: list[StepRecord]

    @property
    def running(self) -> bool:
        return self.status == "running"


@dataclass(frozen=True)
class LockInfo:
    """The lease on ``target`` held by ``execution_id``; times are aware UTC."""

    target: str
    execution_id: str
    actor: str
    acquired_at: datetime
    expires_at: datetime
