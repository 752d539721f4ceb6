"""Approval requests: a production change recorded with its plan, waiting for N approvals.

A request leaves ``pending`` exactly once (approved, denied, expired or cancelled); an
approved one then ends ``void`` (its plan changed) or ``executed``. Every transition is
a conditional ``UPDATE ... WHERE id = :id AND status = :from``: of racing callers the
database lets exactly one change the row, and only that one is told it did.

``approve`` also has to count, so it first locks the request row (``SELECT ... FOR
UPDATE`` on PostgreSQL; on SQLite the write transaction holds ``BEGIN IMMEDIATE``):
approvers of one request take turns, each counts the approvals committed before it,
and the one whose approval reaches ``required`` makes the flip. Without the lock, two
approvers of a 2-approval request could each count only their own and both answer
"recorded", leaving it pending for ever. The unique (request_id, actor, kind)
constraint makes a user's approval count once even so.

"Now" is the store's clock; a request is open while ``now < expires_at``. Nothing here
judges who may approve: callers check eligibility and self-approval first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Insert, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, selectinload, sessionmaker

from bot.store.db import read_session, write_session
from bot.store.errors import NotFound
from bot.store.ids import new_id
from bot.store.models import ApprovalDecisionRow, ApprovalRequestRow
from bot.store.records import ApprovalOutcome, ApprovalRequest, ApprovalResult, Decision

__all__ = [
    "approve",
    "cancel",
    "create",
    "deny",
    "expire",
    "expire_due",
    "get",
    "mark_executed",
    "pending",
    "set_message",
    "to_record",
    "void",
]

PENDING = "pending"
APPROVED = "approved"
DENIED = "denied"
EXPIRED = "expired"
CANCELLED = "cancelled"
VOID = "void"
EXECUTED = "executed"

APPROVE = "approve"
DENY = "deny"


class _Lost(Exception):
    """A conditional UPDATE changed nothing after the checks passed: roll back."""


def create(
    factory: sessionmaker[Session],
    now: datetime,
    *,
    runbook: str,
    command: str,
    environment: str,
    target: str | None,
    params: dict[str, Any],
    reason: str | None,
    requester: str,
    source: str,
    channel: str | None,
    plan_text: str,
    plan_digest: str,
    required: int,
    eligible_users: Sequence[str],
    eligible_groups: Sequence[str],
    allow_self: bool,
    ttl_seconds: float,
    emergency: bool,
) -> ApprovalRequest:
    if isinstance(required, bool) or required < 1:
        raise ValueError(f"required must be at least 1, not {required!r}")
    if not (math.isfinite(ttl_seconds) and ttl_seconds > 0):
        raise ValueError(f"ttl_seconds must be a positive number of seconds, not {ttl_seconds!r}")
    row = ApprovalRequestRow(
        id=new_id("rq"),
        runbook=runbook,
        command=command,
        environment=environment,
        target=target,
        params=dict(params),
        reason=reason,
        requester=requester,
        source=source,
        channel=channel,
        message_ts=None,
        plan_text=plan_text,
        plan_digest=plan_digest,
        required=required,
        eligible_users=list(eligible_users),
        eligible_groups=list(eligible_groups),
        allow_self=allow_self,
        emergency=emergency,
        status=PENDING,
        created_at=now,
        expires_at=now + timedelta(seconds=ttl_seconds),
        decided_at=None,
        execution_id=None,
        note=None,
        cancelled_by=None,
        decisions=[],
    )
    with write_session(factory) as session:
        session.add(row)
    return to_record(row)


def get(factory: sessionmaker[Session], request_id: str) -> ApprovalRequest | None:
    with read_session(factory) as session:
        row = _find(session, request_id)
        return None if row is None else to_record(row)


def pending(factory: sessionmaker[Session], *, environment: str | None) -> list[ApprovalRequest]:
    """Oldest first, including any past ``expires_at`` that the sweep has not reached."""
    query = select(ApprovalRequestRow).where(ApprovalRequestRow.status == PENDING)
    if environment is not None:
        query = query.where(ApprovalRequestRow.environment == environment)
    query = query.order_by(ApprovalRequestRow.created_at, ApprovalRequestRow.id).options(
        selectinload(ApprovalRequestRow.decisions)
    )
    with read_session(factory) as session:
        return [to_record(row) for row in session.scalars(query)]


def set_message(factory: sessionmaker[Session], request_id: str, *, channel: str, ts: str) -> None:
    stmt = (
        update(ApprovalRequestRow)
        .where(ApprovalRequestRow.id == request_id)
        .values(channel=channel, message_ts=ts)
        .returning(ApprovalRequestRow.id)
    )
    with write_session(factory) as session:
        if session.execute(stmt).first() is None:
            raise NotFound(f"no approval request {request_id!r}")


def approve(
    factory: sessionmaker[Session], now: datetime, request_id: str, user: str
) -> ApprovalOutcome:
    _check_user(user)
    try:
        with write_session(factory) as session:
            row = _find(session, request_id, lock=True)
            if row is None:
                raise NotFound(f"no approval request {request_id!r}")
            refusal = _refusal(row, now)
            if refusal is not None:
                return ApprovalOutcome(to_record(row), refusal)
            if not _insert_approval(session, request_id, user, now):
                return ApprovalOutcome(to_record(row), "already_approved")
            count = session.scalar(
                select(func.count())
                .select_from(ApprovalDecisionRow)
                .where(
                    ApprovalDecisionRow.request_id == request_id,
                    ApprovalDecisionRow.kind == APPROVE,
                )
            )
            result: ApprovalResult = "recorded"
            if count is not None and count >= row.required:
                if not _transition(session, request_id, PENDING, APPROVED, decided_at=now):
                    raise _Lost
                result = "complete"
            return ApprovalOutcome(_reloaded(session, request_id), result)
    except _Lost:
        return _not_pending(factory, request_id)


def deny(
    factory: sessionmaker[Session], now: datetime, request_id: str, user: str, reason: str
) -> ApprovalOutcome:
    _check_user(user)
    with write_session(factory) as session:
        if not _transition(
            session,
            request_id,
            PENDING,
            DENIED,
            ApprovalRequestRow.expires_at > now,
            decided_at=now,
        ):
            row = _existing(session, request_id)
            return ApprovalOutcome(to_record(row), _refusal(row, now) or "not_pending")
        session.add(
            ApprovalDecisionRow(request_id=request_id, actor=user, kind=DENY, reason=reason, at=now)
        )
        session.flush()
        return ApprovalOutcome(_reloaded(session, request_id), "denied")


def cancel(
    factory: sessionmaker[Session], now: datetime, request_id: str, user: str, note: str | None
) -> ApprovalOutcome:
    """Pending -> cancelled, even past ``expires_at`` (it ends either way)."""
    _check_user(user)
    with write_session(factory) as session:
        if not _transition(
            session, request_id, PENDING, CANCELLED, decided_at=now, cancelled_by=user, note=note
        ):
            return ApprovalOutcome(to_record(_existing(session, request_id)), "not_pending")
        return ApprovalOutcome(_reloaded(session, request_id), "cancelled")


def expire(
    factory: sessionmaker[Session], now: datetime, request_id: str
) -> ApprovalRequest | None:
    with write_session(factory) as session:
        if not _transition(
            session,
            request_id,
            PENDING,
            EXPIRED,
            ApprovalRequestRow.expires_at <= now,
            decided_at=now,
        ):
            _existing(session, request_id)
            return None
        return _reloaded(session, request_id)


def expire_due(factory: sessionmaker[Session], now: datetime) -> list[ApprovalRequest]:
    """Every pending request past expiry -> expired; each is returned to one caller only."""
    stmt = (
        update(ApprovalRequestRow)
        .where(ApprovalRequestRow.status == PENDING, ApprovalRequestRow.expires_at <= now)
        .values(status=EXPIRED, decided_at=now)
        .returning(ApprovalRequestRow.id)
        .execution_options(synchronize_session=False)
    )
    with write_session(factory) as session:
        ids = list(session.scalars(stmt))
        if not ids:
            return []
        rows = session.scalars(
            select(ApprovalRequestRow)
            .where(ApprovalRequestRow.id.in_(ids))
            .order_by(ApprovalRequestRow.created_at, ApprovalRequestRow.id)
            .options(selectinload(ApprovalRequestRow.decisions))
        )
        return [to_record(row) for row in rows]


def void(factory: sessionmaker[Session], request_id: str, note: str) -> ApprovalRequest | None:
    return _close_approved(factory, request_id, VOID, note=note)


def mark_executed(
    factory: sessionmaker[Session], request_id: str, execution_id: str
) -> ApprovalRequest | None:
    return _close_approved(factory, request_id, EXECUTED, execution_id=execution_id)


def _close_approved(
    factory: sessionmaker[Session], request_id: str, status: str, **values: Any
) -> ApprovalRequest | None:
    with write_session(factory) as session:
        if not _transition(session, request_id, APPROVED, status, **values):
            _existing(session, request_id)
            return None
        return _reloaded(session, request_id)


def _check_user(user: str) -> None:
    if not user:
        raise ValueError("a user id must not be empty")


def _refusal(row: ApprovalRequestRow, now: datetime) -> ApprovalResult | None:
    if row.status != PENDING:
        return "not_pending"
    if now >= row.expires_at:
        return "expired"
    return None


def _transition(
    session: Session,
    request_id: str,
    old: str,
    new: str,
    *conditions: ColumnElement[bool],
    **values: Any,
) -> bool:
    """``old`` -> ``new`` if the row is still ``old`` (and ``conditions`` hold); True if so."""
    stmt = (
        update(ApprovalRequestRow)
        .where(ApprovalRequestRow.id == request_id, ApprovalRequestRow.status == old, *conditions)
        .values(status=new, **values)
        .returning(ApprovalRequestRow.id)
        .execution_options(synchronize_session=False)
    )
    return session.execute(stmt).first() is not None


def _insert_approval(session: Session, request_id: str, user: str, now: datetime) -> bool:
    """Record ``user``'s approval; False (and no change) if it was recorded before."""
    values = {"request_id": request_id, "actor": user, "kind": APPROVE, "reason": None, "at": now}
    dialect = session.get_bind().dialect.name
    stmt: Insert
    if dialect == "postgresql":
        stmt = postgresql.insert(ApprovalDecisionRow).values(values).on_conflict_do_nothing()
    elif dialect == "sqlite":
        stmt = sqlite.insert(ApprovalDecisionRow).values(values).on_conflict_do_nothing()
    else:
        raise NotImplementedError(f"approve is not implemented for {dialect}")
    # RETURNING rather than rowcount, which psycopg does not report here.
    return session.execute(stmt.returning(ApprovalDecisionRow.id)).first() is not None


def _find(session: Session, request_id: str, *, lock: bool = False) -> ApprovalRequestRow | None:
    query = (
        select(ApprovalRequestRow)
        .where(ApprovalRequestRow.id == request_id)
        .options(selectinload(ApprovalRequestRow.decisions))
        .execution_options(populate_existing=True)
    )
    if lock:
        query = query.with_for_update()
    return session.scalars(query).one_or_none()


def _existing(session: Session, request_id: str) -> ApprovalRequestRow:
    row = _find(session, request_id)
    if row is None:
        raise NotFound(f"no approval request {request_id!r}")
    return row


def _reloaded(session: Session, request_id: str) -> ApprovalRequest:
    """The row as this transaction left it (after Core-level UPDATEs and INSERTs)."""
    session.expire_all()
    return to_record(_existing(session, request_id))


def _not_pending(factory: sessionmaker[Session], request_id: str) -> ApprovalOutcome:
    with read_session(factory) as session:
        return ApprovalOutcome(to_record(_existing(session, request_id)), "not_pending")


def to_record(row: ApprovalRequestRow) -> ApprovalRequest:
    # In the order recorded (``at`` is read before waiting for the row lock, so it may
    # run a few milliseconds out of step under contention).
    decisions = sorted(row.decisions, key=lambda d: d.id)
    approvals = [Decision(d.actor, d.at, d.reason) for d in decisions if d.kind == APPROVE]
    denial = next((Decision(d.actor, d.at, d.reason) for d in decisions if d.kind == DENY), None)
    return ApprovalRequest(
        id=row.id,
        runbook=row.runbook,
        command=row.command,
        environment=row.environment,
        target=row.target,
        params=dict(row.params),
        reason=row.reason,
        requester=row.requester,
        source=row.source,
        channel=row.channel,
        ts=row.message_ts,
        plan_text=row.plan_text,
        plan_digest=row.plan_digest,
        required=row.required,
        eligible_users=list(row.eligible_users),
        eligible_groups=list(row.eligible_groups),
        allow_self=row.allow_self,
        emergency=row.emergency,
        status=row.status,
        created_at=row.created_at,
        expires_at=row.expires_at,
        decided_at=row.decided_at,
        approvals=approvals,
        denial=denial,
        execution_id=row.execution_id,
        note=row.note,
        cancelled_by=row.cancelled_by,
    )
