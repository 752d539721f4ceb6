"""What an approval request looks like to people, independent of Slack or the console."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from bot.store import ApprovalRequest

__all__ = ["ApprovalView", "view_of"]


@dataclass(frozen=True)
class ApprovalView:
    request_id: str
    command: str
    environment: str
    requester: str  # display name
    reason: str | None
    plan: tuple[str, ...]
    required: int
    approvals: tuple[tuple[str, datetime], ...]  # (display name, when)
    approvers: str  # who may approve, for people
    expires_at: datetime
    status: str
    denial: tuple[str, str | None, datetime] | None  # (who, reason, when)
    note: str | None
    channel: str | None
    ts: str | None
    execution_id: str | None
    emergency: bool = False
    allow_self: bool = False  # the requester may approve too (if otherwise eligible)
    checklist: tuple[str, ...] = ()  # what each approver confirms (not for break-glass)

    @property
    def open(self) -> bool:
        return self.status == "pending"


def view_of(request: ApprovalRequest, handle: Callable[[str], str]) -> ApprovalView:
    who = [handle(u) for u in request.eligible_users] + [f"@{g}" for g in request.eligible_groups]
    denial = request.denial
    return ApprovalView(
        request_id=request.id,
        command=request.command,
        environment=request.environment,
        requester=handle(request.requester),
        reason=request.reason,
        plan=tuple(request.plan_text.splitlines()),
        required=request.required,
        approvals=tuple((handle(d.user), d.at) for d in request.approvals),
        approvers=", ".join(who) or "nobody (check environments.<env>.approval)",
        expires_at=request.expires_at,
        status=request.status,
        denial=(handle(denial.user), denial.reason, denial.at) if denial else None,
        note=request.note,
        channel=request.channel,
        ts=request.ts,
        execution_id=request.execution_id,
        emergency=request.emergency,
        allow_self=request.allow_self,
        checklist=() if request.emergency else request.checklist,
    )
