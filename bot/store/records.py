"""Plain, immutable views of stored executions, locks and approval requests.

Callers never see ORM objects, so nothing they do can lazily hit the database
from another thread or after the session is gone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

__all__ = [
    "EXECUTION_FINAL_STATUSES",
    "ApprovalOutcome",
    "ApprovalRequest",
    "ApprovalResult",
    "Decision",
    "ExecutionRecord",
    "LockInfo",
    "SilenceRecord",
    "StepRecord",
]

#: Statuses ``finish_execution`` accepts; ``running`` is the only other one.
EXECUTION_FINAL_STATUSES = frozenset(
    {"succeeded", "failed", "refused", "interrupted", "cancelled"})


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
    owner: str | None = None  # the replica that runs (ran) it
    cancel_requested_by: str | None = None  # `cancel <execution-id>`: who asked
    cancel_requested_at: datetime | None = None

    @property
    def running(self) -> bool:
        return self.status == "running"


@dataclass(frozen=True)
class LockInfo:
    """The lease on ``target`` held by ``execution_id``, or (``execution_id`` None) the
    reservation of the pending approval request ``request_id``; times are aware UTC.
    ``command`` is filled in by listings only (the execution's or the request's)."""

    target: str
    execution_id: str | None
    actor: str
    acquired_at: datetime
    expires_at: datetime
    request_id: str | None = None
    command: str | None = None

    @property
    def reservation(self) -> bool:
        return self.execution_id is None


@dataclass(frozen=True)
class SilenceRecord:
    """A silence opsbot made in Alertmanager, as remembered here (see ``SilenceRow``)."""

    id: str
    matchers: dict[str, str]
    created_by: str
    created_at: datetime
    ends_at: datetime
    execution_id: str | None
    expired_by: str | None
    expired_at: datetime | None


#: What ``approve``, ``deny`` and ``cancel`` report.
ApprovalResult = Literal[
    "recorded",  # approval stored, more are needed
    "complete",  # this approval made it approved; exactly one caller ever gets it
    "already_approved",  # this user's approval was stored before: nothing changed
    "denied",
    "cancelled",
    "not_pending",  # no longer pending (decided, cancelled, expired by the scheduler...)
    "expired",  # still pending but past expires_at: nothing recorded
]


@dataclass(frozen=True)
class Decision:
    """One approval, or the denial, of a request."""

    user: str
    at: datetime
    reason: str | None = None


@dataclass(frozen=True)
class ApprovalRequest:
    """A production change waiting for (or past) approval; times are aware UTC.

    The store records who may approve (``eligible_*``, ``allow_self``) but does not
    judge it: callers check eligibility before ``approve``.
    """

    id: str
    runbook: str
    command: str
    environment: str
    target: str | None
    params: dict[str, Any]
    reason: str | None
    requester: str
    source: str
    channel: str | None
    ts: str | None
    plan_text: str
    plan_digest: str
    required: int
    eligible_users: list[str]
    eligible_groups: list[str]
    allow_self: bool
    emergency: bool
    status: str  # pending, approved, denied, expired, cancelled, void or executed
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    approvals: list[Decision]
    denial: Decision | None
    execution_id: str | None
    note: str | None
    cancelled_by: str | None = None
    context: dict[str, Any] = field(default_factory=dict)  # e.g. {"alert": {...}}
    checklist: tuple[str, ...] = ()  # what each approver confirms before approving

    @property
    def pending(self) -> bool:
        return self.status == "pending"


@dataclass(frozen=True)
class ApprovalOutcome:
    """The request as it stands after an ``approve``/``deny``/``cancel``, and what happened."""

    request: ApprovalRequest
    result: ApprovalResult
