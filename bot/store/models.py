"""Tables of the store, as typed SQLAlchemy declarative models.

The Alembic migrations in ``migrations/versions`` must create exactly these
(a test runs autogenerate's ``compare_metadata`` to keep the two in step). Later
features (approval requests, alerts, the APScheduler job store) add their
tables with new migrations (``0003`` added approval requests, ``0006`` the outbox); nothing here
assumes it owns the whole database.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "GENESIS_HASH",
    "AlertGroupRow",
    "AlertNotificationRow",
    "AlertRunRow",
    "AlertStateClaim",
    "ApprovalDecisionRow",
    "ApprovalRequestRow",
    "AuditHead",
    "AuditRecord",
    "AutomationBreakerRow",
    "AutomationPauseRow",
    "Base",
    "DeliveryClaim",
    "Execution",
    "ExecutionStep",
    "OutboxMessage",
    "OutboxRow",
    "ReplicaRow",
    "SilenceRow",
    "TargetLock",
    "UTCDateTime",
    "utcnow",
]

#: ``prev_hash`` of the first audit record, and the head's hash while the log is empty.
GENESIS_HASH = "0" * 64

# Fixed constraint names, so migrations (and SQLite batch rebuilds) can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class JSONDocument(TypeDecorator[Any]):
    """A JSON document: `jsonb` on PostgreSQL, JSON text elsewhere. PostgreSQL's type is
    imported there only: its dialect is ~50 modules and tens of milliseconds of a start that
    a SQLite process never needs (`JSON().with_variant(JSONB(), ...)` imports it anywhere)."""

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(JSON())


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend.

    SQLite has no time zones, so UTC is stored naive there and made aware again
    on the way out; PostgreSQL keeps ``timestamptz``. Naive input is refused
    rather than guessed at.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store wants aware UTC times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Execution(Base):
    """One run of a runbook, dry or real, from request to outcome."""

    __tablename__ = "executions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    runbook: Mapped[str] = mapped_column(String)
    source: Mapped[str] = mapped_column(String)
    actor: Mapped[str] = mapped_column(String)
    command: Mapped[str] = mapped_column(Text)
    environment: Mapped[str | None] = mapped_column(String)
    target: Mapped[str | None] = mapped_column(String)
    params: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    dry_run: Mapped[bool]
    request_id: Mapped[str | None] = mapped_column(String)
    # Where the Slack message reporting this execution lives, to update it later.
    channel: Mapped[str | None] = mapped_column(String)
    message_ts: Mapped[str | None] = mapped_column(String)
    status: Mapped[str] = mapped_column(String(20), index=True)
    summary: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The replica (process) running it; recovery interrupts a run only once its owner's
    # heartbeat (``replicas``) is stale. None: recorded before owners were (0007).
    owner: Mapped[str | None] = mapped_column(String(255))
    # `cancel <execution-id>`: who asked and when; the runner, on whichever replica, reads it
    # between steps (0009).
    cancel_requested_by: Mapped[str | None] = mapped_column(String(255))
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    steps: Mapped[list[ExecutionStep]] = relationship(
        back_populates="execution",
        order_by="ExecutionStep.index",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )

    __table_args__ = (Index(None, "environment", "target", "started_at"),)


class ExecutionStep(Base):
    """One runbook step of an execution; ``index`` is its position in the runbook."""

    __tablename__ = "execution_steps"

    execution_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("executions.id", ondelete="CASCADE"), primary_key=True
    )
    index: Mapped[int] = mapped_column("step_index", Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String)
    handler: Mapped[str] = mapped_column(String)
    status: Mapped[str] = mapped_column(String(20))
    summary: Mapped[str | None] = mapped_column(Text)
    output: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    execution: Mapped[Execution] = relationship(back_populates="steps")


class DeliveryClaim(Base):
    """A Slack delivery (or other event) already acted on; the primary key is the dedup."""

    __tablename__ = "delivery_claims"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    # A Slack trigger acked before its work started: what arrived (JSON), the replica that
    # acked it, and when its work started (None: not yet; see `bot.store.deliveries`).
    trigger: Mapped[str | None] = mapped_column(Text(), nullable=True)
    owner: Mapped[str | None] = mapped_column(String(255), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class AuditRecord(Base):
    """One append-only, hash-chained audit record (see ``bot.store.audit``)."""

    __tablename__ = "audit_records"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    time: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    actor: Mapped[str] = mapped_column(String)
    source: Mapped[str] = mapped_column(String)
    command: Mapped[str] = mapped_column(Text)
    environment: Mapped[str | None] = mapped_column(String)
    target: Mapped[str | None] = mapped_column(String)
    outcome: Mapped[str] = mapped_column(String)
    execution_id: Mapped[str | None] = mapped_column(String(40), index=True)
    request_id: Mapped[str | None] = mapped_column(String)
    # Canonical JSON text, kept verbatim so the hashed bytes survive any backend.
    details: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    # History views: one target's records, newest first (``seq`` descending).
    __table_args__ = (Index(None, "environment", "target", "seq"),)


class AuditHead(Base):
    """The single row naming the last audit record; also the lock appenders take."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)


class TargetLock(Base):
    """The lease one execution holds on a target (``environment/app``), or the reservation of
    a pending approval request on it; see ``bot.store.locks``.

    At most one row per target. A row whose ``expires_at`` has passed is free to take
    over; it stays until then so that nothing but a new ``acquire`` has to delete it.
    ``execution_id`` is deliberately not a foreign key: a caller may take the lock
    before it records the execution. A reservation has no ``execution_id`` and names its
    ``request_id`` (0009); the request's execution takes the row over when it starts.
    """

    __tablename__ = "target_locks"

    target: Mapped[str] = mapped_column(String(255), primary_key=True)
    execution_id: Mapped[str | None] = mapped_column(String(40), index=True)
    actor: Mapped[str] = mapped_column(String)
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Last, where 0009 added it: a new database made from the models has the same table.
    request_id: Mapped[str | None] = mapped_column(String(40), index=True)


class SilenceRow(Base):
    """An Alertmanager silence opsbot made (0009): alert messages show it, with who made it,
    until when and who expired it. Alertmanager stays the truth of what is silenced."""

    __tablename__ = "silences"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    matchers: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    execution_id: Mapped[str | None] = mapped_column(String(40))
    expired_by: Mapped[str | None] = mapped_column(String(255))
    expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ApprovalRequestRow(Base):
    """A production change waiting for approval (``bot.store.approvals``).

    ``status`` leaves ``pending`` exactly once, by a conditional UPDATE; ``decided_at``
    is when it did. ``execution_id`` is not a foreign key, like ``target_locks``.
    """

    __tablename__ = "approval_requests"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    runbook: Mapped[str] = mapped_column(String)
    command: Mapped[str] = mapped_column(Text)
    environment: Mapped[str] = mapped_column(String)
    target: Mapped[str | None] = mapped_column(String)
    params: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    reason: Mapped[str | None] = mapped_column(Text)
    requester: Mapped[str] = mapped_column(String)
    source: Mapped[str] = mapped_column(String)
    channel: Mapped[str | None] = mapped_column(String)
    message_ts: Mapped[str | None] = mapped_column(String)
    plan_text: Mapped[str] = mapped_column(Text)
    plan_digest: Mapped[str] = mapped_column(String)
    required: Mapped[int] = mapped_column(Integer)
    eligible_users: Mapped[list[str]] = mapped_column(JSONDocument)
    eligible_groups: Mapped[list[str]] = mapped_column(JSONDocument)
    allow_self: Mapped[bool] = mapped_column(Boolean)
    emergency: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    execution_id: Mapped[str | None] = mapped_column(String(40))
    note: Mapped[str | None] = mapped_column(Text)
    cancelled_by: Mapped[str | None] = mapped_column(String)
    # Template values the run sees besides its parameters (`alert` for a run an alert
    # started), so the approved run renders the plan its approvers saw.
    context: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)
    # The pre-deploy checklist each approver confirms, as it was when requested (0010).
    checklist: Mapped[list[str] | None] = mapped_column(JSONDocument)

    decisions: Mapped[list[ApprovalDecisionRow]] = relationship(
        order_by="ApprovalDecisionRow.id",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )

    __table_args__ = (
        # Pending lists and the expiry sweep: WHERE status = 'pending' [AND expires_at <= now].
        Index(None, "status", "expires_at"),
        CheckConstraint("required >= 1", name="required_positive"),
        CheckConstraint(
            "status IN ('pending', 'approved', 'denied', 'expired', 'cancelled', 'void',"
            " 'executed')",
            name="status_known",
        ),
    )


class ApprovalDecisionRow(Base):
    """One approval or the denial of a request, by one user.

    The unique constraint is what makes a user's approval count once, whatever races.
    """

    __tablename__ = "approval_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("approval_requests.id", ondelete="CASCADE")
    )
    actor: Mapped[str] = mapped_column(String)
    kind: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("request_id", "actor", "kind"),
        CheckConstraint("kind IN ('approve', 'deny')", name="kind_known"),
    )


class AlertNotificationRow(Base):
    """An Alertmanager notification as received; committed before the webhook is answered."""

    __tablename__ = "alert_notifications"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    group_hash: Mapped[str] = mapped_column(String(64))
    receiver: Mapped[str] = mapped_column(String)
    status: Mapped[str] = mapped_column(String(20))
    # The JSON text as received, `json` on PostgreSQL (0011): the server checks it, where
    # `jsonb` would build its binary form on the intake's path; it is only ever read whole.
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The replica processing it, until when: one replica at a time takes a notification.
    claimed_by: Mapped[str | None] = mapped_column(String(255))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (Index(None, "processed_at", "received_at"),)


class AlertStateClaim(Base):
    """One alert state (fingerprint, status, startsAt) seen, and the notification that owns it."""

    __tablename__ = "alert_states"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    notification_id: Mapped[str] = mapped_column(String(40))
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class AlertGroupRow(Base):
    """An Alertmanager alert group: its alerts as last notified, and its Slack message."""

    __tablename__ = "alert_groups"

    group_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    group_key: Mapped[str] = mapped_column(Text)
    receiver: Mapped[str] = mapped_column(String)
    status: Mapped[str] = mapped_column(String(20))
    alerts: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    channel: Mapped[str | None] = mapped_column(String)
    message_ts: Mapped[str | None] = mapped_column(String)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AlertRunRow(Base):
    """A guardrail decision on one runbook for one alert state, and the run it allowed."""

    __tablename__ = "alert_runs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    state_key: Mapped[str] = mapped_column(String(255))
    group_hash: Mapped[str] = mapped_column(String(64), index=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    alertname: Mapped[str] = mapped_column(String)
    runbook: Mapped[str] = mapped_column(String)
    environment: Mapped[str | None] = mapped_column(String)
    target: Mapped[str | None] = mapped_column(String)
    mutating: Mapped[bool] = mapped_column(Boolean)
    decision: Mapped[str] = mapped_column(String(20))
    detail: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))
    execution_id: Mapped[str | None] = mapped_column(String(40))
    request_id: Mapped[str | None] = mapped_column(String(40))
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    owner: Mapped[str | None] = mapped_column(String(255))  # the replica that decided it

    __table_args__ = (
        UniqueConstraint("state_key", "runbook"),
        Index(None, "runbook", "environment", "target", "at"),
        Index(None, "status"),
    )


class AutomationPauseRow(Base):
    """Automation paused everywhere (scope ``*``) or in one environment, until a time or not."""

    __tablename__ = "automation_pauses"

    scope: Mapped[str] = mapped_column(String, primary_key=True)
    until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String)
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class AutomationBreakerRow(Base):
    """Consecutive failed automatic remediations of one target; open once they reach the limit."""

    __tablename__ = "automation_breakers"

    environment: Mapped[str] = mapped_column(String, primary_key=True)
    target: Mapped[str] = mapped_column(String, primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class OutboxRow(Base):
    """One outbound chat effect (a message, its update, an ephemeral reply, an upload), stored
    before it is sent and delivered in ``id`` order within its ``stream``; see
    ``bot.store.outbox``."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    stream: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(20))
    # The message a `show` puts its content in (posted the first time, updated after).
    message_key: Mapped[str | None] = mapped_column(String(255), index=True)
    # The message this one is a reply to, or needs to exist first.
    parent_key: Mapped[str | None] = mapped_column(String(255))
    orphan: Mapped[str] = mapped_column(String(10))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    content: Mapped[bytes | None] = mapped_column(LargeBinary)
    # What to send in its place when its channel or message cannot take it.
    instead: Mapped[list[dict[str, Any]]] = mapped_column(JSONDocument)
    substituted: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime())
    owner: Mapped[str | None] = mapped_column(String(80))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        # The head of each stream: WHERE stream = ? AND id < ? AND status IN (...).
        Index(None, "stream", "id"),
        # What is due: WHERE status = 'pending' AND not_before <= now.
        Index(None, "status", "not_before"),
        CheckConstraint(
            "status IN ('pending', 'sending', 'delivered', 'coalesced', 'failed', 'dropped')",
            name="status_known",
        ),
    )


class OutboxMessage(Base):
    """Where a message the outbox posted lives, by its logical key (``execution:ex-...``), or
    why it could not be posted; later updates and thread replies are addressed through it."""

    __tablename__ = "outbox_messages"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    channel: Mapped[str | None] = mapped_column(String)
    ts: Mapped[str | None] = mapped_column(String)
    thread_ts: Mapped[str | None] = mapped_column(String)
    error: Mapped[str | None] = mapped_column(String)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class ReplicaRow(Base):
    """A running opsbot process and when it last said so (its heartbeat)."""

    __tablename__ = "replicas"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
