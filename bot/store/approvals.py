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

A request on a target may reserve it (``reserve``: the lock key): the reservation is a
``target_locks`` row made in the transaction that creates the request, or the request is not
made (``TargetHeld``). Every transition that ends the request without its run drops the
reservation in the same transaction; approving keeps it until the run takes it over.

"Now" is the store's clock; a request is open while ``now < expires_at``. Nothing here
judges who may approve: callers check eligibility and self-approval first.

The functions at the end take the ``Store`` itself (its clock and sessions): the approval
service uses them to settle requests a stopped process left ``approved`` and to claim
break-glass reminders once across replicas.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.orm import Session, selectinload, sessionmaker

from bot.store import locks as _locks
from bot.store.db import conflict_insert, read_session, write_session
from bot.store.errors import NotFound, TargetHeld
from bot.store.ids import new_id
from bot.store.models import ApprovalDecisionRow, ApprovalRequestRow, Execution
from bot.store.records import ApprovalOutcome, ApprovalRequest, ApprovalResult, Decision

__all__ = [
    "ReminderVerdict",
    "RunOfRequest",
    "Unfinished",
    "approve",
    "cancel",
    "create",
    "deny",
    "expire",
    "expire_due",
    "get",
    "mark_executed",
    "pending",
    "reminder_due",
    "run_of",
    "set_message",
    "to_record",
    "unfinished",
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

# How long an approved request's reservation outlives its approval while its run starts
# (the run takes it over first thing); the approval service's START_GRACE is as long.
APPROVED_HOLD = timedelta(minutes=10)


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
    context: dict[str, Any] | None = None,
    reserve: str | None = None,
    checklist: Sequence[str] = (),
) -> ApprovalRequest:
    """The new pending request; with ``reserve`` (a lock key), the target is reserved for it
    in the same transaction, or nothing is recorded and ``TargetHeld`` names the holder."""
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
        context=dict(context) if context else None,
        checklist=list(checklist) or None,
        decisions=[],
    )
    with write_session(factory) as session:
        session.add(row)
        if reserve is not None:
            session.flush()
            held = _locks.reserve(session, now, reserve, request_id=row.id, actor=requester,
                                  until=row.expires_at)
            if held.request_id != row.id or held.execution_id is not None:
                raise TargetHeld(held)  # rolls the request back with the transaction
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
                _locks.extend_reservation(session, request_id, now + APPROVED_HOLD)
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
        _locks.release_reservation(session, request_id)
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
        _locks.release_reservation(session, request_id)
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
        _locks.release_reservation(session, request_id)
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
        for request_id in ids:
            _locks.release_reservation(session, request_id)
        rows = session.scalars(
            select(ApprovalRequestRow)
            .where(ApprovalRequestRow.id.in_(ids))
            .order_by(ApprovalRequestRow.created_at, ApprovalRequestRow.id)
            .options(selectinload(ApprovalRequestRow.decisions))
        )
        return [to_record(row) for row in rows]


def void(
    factory: sessionmaker[Session], request_id: str, note: str, *, execution_id: str | None = None
) -> ApprovalRequest | None:
    values: dict[str, Any] = {"note": note}
    if execution_id is not None:
        values["execution_id"] = execution_id
    return _close_approved(factory, request_id, VOID, **values)


def mark_executed(
    factory: sessionmaker[Session], request_id: str, execution_id: str, *,
    note: str | None = None,
) -> ApprovalRequest | None:
    values: dict[str, Any] = {"execution_id": execution_id}
    if note is not None:
        values["note"] = note
    return _close_approved(factory, request_id, EXECUTED, **values)


@dataclass(frozen=True)
class RunOfRequest:
    """The newest execution started for a request: enough to say how it ended."""

    id: str
    status: str
    summary: str | None


def run_of(factory: sessionmaker[Session], request_id: str) -> RunOfRequest | None:
    query = (
        select(Execution.id, Execution.status, Execution.summary)
        .where(Execution.request_id == request_id)
        .order_by(Execution.started_at.desc(), Execution.id.desc())
        .limit(1)
    )
    with read_session(factory) as session:
        row = session.execute(query).first()
        return None if row is None else RunOfRequest(row.id, row.status, row.summary)


def approved(factory: sessionmaker[Session]) -> list[ApprovalRequest]:
    """Requests approved for a normal run whose run has not been recorded on them.

    Break-glass requests are left out: for them ``approved`` means acknowledged, and final.
    """
    query = (
        select(ApprovalRequestRow)
        .where(ApprovalRequestRow.status == APPROVED, ApprovalRequestRow.emergency.is_(False))
        .order_by(ApprovalRequestRow.decided_at, ApprovalRequestRow.id)
        .options(selectinload(ApprovalRequestRow.decisions))
    )
    with read_session(factory) as session:
        return [to_record(row) for row in session.scalars(query)]


def _close_approved(
    factory: sessionmaker[Session], request_id: str, status: str, **values: Any
) -> ApprovalRequest | None:
    with write_session(factory) as session:
        if not _transition(session, request_id, APPROVED, status, **values):
            _existing(session, request_id)
            return None
        _locks.release_reservation(session, request_id)
        return _reloaded(session, request_id)


@dataclass(frozen=True)
class Unfinished:
    """A request still ``approved``: the run it has (if any), when a run should have started
    by (``decided_at`` plus the grace the caller gave), and whether that time has passed."""

    request: ApprovalRequest
    run: RunOfRequest | None
    start_by: datetime
    overdue: bool


def unfinished(factory: sessionmaker[Session], now: datetime, grace: timedelta,
               request_id: str | None = None) -> list[Unfinished]:
    """Requests left ``approved`` (all, or the one ``request_id``), oldest decision first."""
    if request_id is None:
        requests = approved(factory)
    else:
        one = get(factory, request_id)
        ours = one is not None and one.status == APPROVED and not one.emergency
        requests = [one] if one is not None and ours else []
    found = []
    for request in requests:
        start_by = (request.decided_at or request.created_at) + grace
        found.append(Unfinished(request, run_of(factory, request.id), start_by,
                                overdue=now >= start_by))
    return found


ReminderVerdict = Literal["remind", "duplicate", "expired", "stop"]


def reminder_due(factory: sessionmaker[Session], now: datetime, request_id: str,
                 every_seconds: float) -> tuple[ReminderVerdict, ApprovalRequest | None, str]:
    """Whether a break-glass reminder is due now, and the delivery key that claims it.

    ``stop``: not an unacknowledged break-glass request (any more). ``expired``: past its
    ``expires_at`` (reminders stop). ``remind``: due, once the caller claims the key: one key
    per request and interval since the request, so replicas whose jobs fire at the same
    moment agree on who posts.
    """
    request = get(factory, request_id)
    if request is None or not request.emergency or request.status != PENDING:
        return "stop", request, ""
    if now >= request.expires_at:
        return "expired", request, ""
    interval = int((now - request.created_at).total_seconds() // max(every_seconds, 1.0))
    return "remind", request, f"remind:{request_id}:{interval}"


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
    stmt = (conflict_insert(session.get_bind().dialect.name, ApprovalDecisionRow)
            .values(values).on_conflict_do_nothing())
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
        context=dict(row.context or {}),
        checklist=tuple(row.checklist or ()),
    )
