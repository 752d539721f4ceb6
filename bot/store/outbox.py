"""The outbox: every outbound chat effect is a row here before it is an API call, so a runbook
never waits on chat and a restart (or another replica) finds what is still to be sent.

Rows belong to a *stream* (one execution's messages, one approval request's, one alert
group's) and are delivered strictly in ``id`` order within it: only a stream's *head* (its
oldest row not yet finished) may be claimed. Enqueuing holds a per-stream lock (SQLite's
write lock; a transaction-scoped advisory lock on PostgreSQL), so ids within a stream follow
commit order. A ``show`` (a message's whole content) that arrives while the stream's last row
is a still-waiting ``show`` of the same message replaces that row's content instead of adding
one; and a ``show`` about to be claimed whose next row is a newer ``show`` of the same message
is skipped (``coalesced``) for it. Updates coalesce, and an older state is never sent after a
newer one.

Claims are per row, with a lease: a conditional UPDATE (after ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL) makes exactly one sender the owner; a row whose lease ran out (its sender died)
may be claimed again. A sender is named after its replica (`sender_name`), so the leader
releases at once the rows of a sender whose replica is gone (`release`), instead of leaving
their streams waiting for the lease. Messages are addressed by a logical key
(``execution:ex-...``); where one was posted is recorded in ``outbox_messages`` and in the
column the rest of the product reads (executions, approval requests, alert groups).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import and_, delete, exists, func, or_, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from bot.store.db import read_session, write_session
from bot.store.models import (
    AlertGroupRow,
    ApprovalRequestRow,
    Execution,
    OutboxMessage,
    OutboxRow,
)

__all__ = [
    "KEEP_ADDRESSES",
    "KEEP_FINISHED",
    "Claimed",
    "MessageAddress",
    "OutboxStats",
    "Outgoing",
    "alert_group_key",
    "execution_key",
    "release",
    "replica_of",
    "request_key",
    "same_replica",
    "sender_name",
]

KEEP_FINISHED = timedelta(days=1)  # delivered, failed and dropped rows, for inspection
KEEP_ADDRESSES = timedelta(days=7)  # longer than any execution reports

PENDING, SENDING = "pending", "sending"
FINISHED = ("delivered", "coalesced", "failed", "dropped")
Orphan = Literal["drop", "top"]

# Arbitrary constant naming "outbox streams" among PostgreSQL advisory locks (two-key form).
_STREAM_LOCK_CLASS = 0x0B5B0C


def execution_key(execution_id: str) -> str:
    return f"execution:{execution_id}"


def request_key(request_id: str) -> str:
    return f"request:{request_id}"


def alert_group_key(group_hash: str) -> str:
    return f"alert-group:{group_hash}"


# Where a posted message's address is also recorded, for the rest of the product to read.
_DOMAIN = {
    "execution": (Execution, Execution.id),
    "request": (ApprovalRequestRow, ApprovalRequestRow.id),
    "alert-group": (AlertGroupRow, AlertGroupRow.group_hash),
}


@dataclass(frozen=True)
class Outgoing:
    """One effect to send. ``kind`` and ``payload`` are the front end's (the store does not
    interpret them, except that ``show`` rows of the same ``key`` coalesce)."""

    kind: str
    payload: dict[str, Any]
    key: str | None = None  # the message a `show` sets
    parent: str | None = None  # the message this needs to exist first (a thread's root)
    orphan: Orphan = "drop"  # without its parent: drop it (or send `instead`), or go top-level
    instead: tuple[dict[str, Any], ...] = ()  # {"kind", "payload"} sent when it cannot be
    content: bytes | None = None  # a file's bytes

    def action(self) -> dict[str, Any]:
        """As an item of another row's ``instead``."""
        return {"kind": self.kind, "payload": dict(self.payload)}


@dataclass(frozen=True)
class Claimed:
    """A row claimed for sending by one owner, until ``lease`` runs out."""

    id: int
    stream: str
    kind: str
    payload: dict[str, Any]
    key: str | None
    parent: str | None
    orphan: Orphan
    instead: tuple[dict[str, Any], ...]
    content: bytes | None
    substituted: bool
    attempts: int  # including this one
    age_seconds: float  # since it was first enqueued
    last_error: str | None  # of the attempt before


@dataclass(frozen=True)
class MessageAddress:
    """Where message ``key`` was posted, or (``error``) why it could not be."""

    key: str
    channel: str | None = None
    ts: str | None = None
    thread_ts: str | None = None  # the thread it is a reply in
    error: str | None = None

    @property
    def root(self) -> str | None:
        """The ts replies to this message go under (a reply's replies join its thread)."""
        return self.thread_ts or self.ts


@dataclass(frozen=True)
class OutboxStats:
    waiting: int  # not delivered yet (pending or being sent)
    oldest_seconds: float  # age of the oldest waiting row; 0 when none
    next_due_seconds: float | None  # until the earliest pending row is due; None when none
    by_status: dict[str, int] = field(default_factory=dict)


def enqueue(factory: sessionmaker[Session], now: datetime,
            items: Sequence[tuple[Outgoing, str | None]]) -> list[int]:
    """Store each (outgoing, stream) of ``items`` at the end of its stream (None: the stream
    of its message's earlier rows, else one of its own), in order, in one transaction; returns
    the row ids, an older row's for a coalesced ``show``."""
    with write_session(factory) as session:
        postgres = session.get_bind().dialect.name == "postgresql"
        named = [(outgoing, _stream_for(session, outgoing, stream)) for outgoing, stream in items]
        if postgres:
            # In one order everywhere: two transactions enqueueing on the same streams wait
            # for each other one after the other, never each for the other.
            for stream in sorted({stream for _, stream in named}):
                session.execute(select(func.pg_advisory_xact_lock(_STREAM_LOCK_CLASS,
                                                                  func.hashtext(stream))))
        return [_enqueue_in(session, now, outgoing, stream) for outgoing, stream in named]


def _stream_for(session: Session, outgoing: Outgoing, stream: str | None) -> str:
    if stream is not None:
        return stream
    return (_stream_of(session, outgoing.key) if outgoing.key else None) \
        or outgoing.key or f"once:{secrets.token_hex(8)}"


def _enqueue_in(session: Session, now: datetime, outgoing: Outgoing, stream: str) -> int:
    if outgoing.kind == "show":
        merged = _coalesce(session, now, stream, outgoing)
        if merged is not None:
            return merged
    row = OutboxRow(
        stream=stream, kind=outgoing.kind, message_key=outgoing.key,
        parent_key=outgoing.parent, orphan=outgoing.orphan, payload=dict(outgoing.payload),
        content=outgoing.content, instead=[dict(i) for i in outgoing.instead],
        substituted=False, status=PENDING, attempts=0, not_before=now, created_at=now,
    )
    session.add(row)
    session.flush()
    return row.id


def _place(payload: dict[str, Any]) -> tuple[Any, ...]:
    return payload.get("channel"), payload.get("ts"), payload.get("thread_ts")


def _coalesce(session: Session, now: datetime, stream: str, outgoing: Outgoing) -> int | None:
    tail = session.scalars(
        select(OutboxRow).where(OutboxRow.stream == stream).order_by(OutboxRow.id.desc())
        .limit(1)
    ).first()
    if (tail is None or tail.status != PENDING or tail.kind != "show" or tail.substituted
            or tail.message_key != outgoing.key or tail.parent_key != outgoing.parent
            or _place(tail.payload) != _place(outgoing.payload)):
        return None
    instead = list(tail.instead) + [i for i in outgoing.instead if i not in tail.instead]
    # Conditional: a sender may have claimed the row since it was read. The new content gets
    # a whole retry budget of its own (`created_at`), its place in the stream stays.
    done = session.execute(
        update(OutboxRow).where(OutboxRow.id == tail.id, OutboxRow.status == PENDING)
        .values(payload=dict(outgoing.payload), instead=instead, orphan=outgoing.orphan,
                created_at=now)
        .returning(OutboxRow.id)
        .execution_options(synchronize_session=False)
    ).first()
    return tail.id if done is not None else None


def _stream_of(session: Session, key: str) -> str | None:
    return session.scalars(
        select(OutboxRow.stream).where(OutboxRow.message_key == key)
        .order_by(OutboxRow.id.desc()).limit(1)
    ).first()


def stream_of(factory: sessionmaker[Session], key: str) -> str | None:
    with read_session(factory) as session:
        return _stream_of(session, key)


def _due(now: datetime) -> Any:
    return or_(
        and_(OutboxRow.status == PENDING, OutboxRow.not_before <= now),
        and_(OutboxRow.status == SENDING, OutboxRow.lease_until < now),
    )


def _head() -> Any:
    """The row is its stream's head: no older row of the stream is still to be sent."""
    earlier = aliased(OutboxRow)
    return ~exists().where(earlier.stream == OutboxRow.stream, earlier.id < OutboxRow.id,
                           earlier.status.in_((PENDING, SENDING)))


def claim(factory: sessionmaker[Session], now: datetime, owner: str, *, limit: int,
          lease: timedelta) -> list[Claimed]:
    """Claim up to ``limit`` due stream heads for ``owner`` (one per stream)."""
    query = select(OutboxRow).where(_due(now), _head()).order_by(OutboxRow.id).limit(limit)
    claimed: list[Claimed] = []
    with write_session(factory) as session:
        postgres = session.get_bind().dialect.name == "postgresql"
        if postgres:
            query = query.with_for_update(skip_locked=True, of=OutboxRow)
        for head in session.scalars(query).all():
            if postgres and _may_coalesce(head) and not session.scalar(
                    select(func.pg_try_advisory_xact_lock(_STREAM_LOCK_CLASS,
                                                          func.hashtext(head.stream)))):
                # An enqueue holds the stream (it may be coalescing into the rows after this
                # one, or into this one). Waiting for it while holding this row's lock would
                # deadlock with it; the enqueue wakes the sender, which claims it next time.
                continue
            row = _newest_state(session, now, head)
            taken = session.execute(
                update(OutboxRow).where(OutboxRow.id == row.id, _due(now))
                .values(status=SENDING, owner=owner, lease_until=now + lease,
                        attempts=OutboxRow.attempts + 1)
                .returning(OutboxRow.id)
                .execution_options(synchronize_session=False)
            ).first()
            if taken is None:
                continue
            claimed.append(Claimed(
                id=row.id, stream=row.stream, kind=row.kind, payload=dict(row.payload),
                key=row.message_key, parent=row.parent_key,
                orphan="top" if row.orphan == "top" else "drop",
                instead=tuple(dict(i) for i in row.instead), content=row.content,
                substituted=row.substituted, attempts=row.attempts + 1,
                age_seconds=max(0.0, (now - row.created_at).total_seconds()),
                last_error=row.error,
            ))
    return claimed


def _may_coalesce(row: OutboxRow) -> bool:
    return row.kind == "show" and not row.substituted


def _newest_state(session: Session, now: datetime, row: OutboxRow) -> OutboxRow:
    """The row to send in place of ``row``: ``row`` itself, or, when it is a ``show`` followed
    by newer ``show`` rows of the same message still waiting, the newest of them (the ones
    passed over end ``coalesced``, their replacements carried over). On PostgreSQL the caller
    holds the stream's lock, so no enqueue is coalescing into those rows meanwhile."""
    if not _may_coalesce(row):
        return row
    while True:
        after = session.scalars(
            select(OutboxRow).where(OutboxRow.stream == row.stream, OutboxRow.id > row.id)
            .order_by(OutboxRow.id).limit(1)
        ).first()
        if (after is None or after.status != PENDING or after.kind != "show"
                or after.substituted or after.message_key != row.message_key
                or after.parent_key != row.parent_key
                or _place(after.payload) != _place(row.payload)):
            return row
        after.instead = list(row.instead) + [i for i in after.instead if i not in row.instead]
        row.status, row.finished_at, row.error = "coalesced", now, None
        row.owner = row.lease_until = None
        session.flush()
        row = after


#: How much of a replica's name a sender's name keeps (`OutboxRow.owner` holds 80 characters).
_REPLICA_PART = 60


def sender_name(replica: str) -> str:
    """A name for one sender of `replica` (the process), unique to this start of it."""
    return f"{replica[:_REPLICA_PART]}/{secrets.token_hex(4)}"


def replica_of(owner: str) -> str:
    """The (shortened) name of the replica whose sender `owner` is (`sender_name`); a name
    from before senders were named so gives itself."""
    return owner.rpartition("/")[0] or owner


def same_replica(owner: str, replica: str) -> bool:
    """Whether `owner` is a sender of `replica` (`sender_name`)."""
    return replica_of(owner) == replica[:_REPLICA_PART]


def release(factory: sessionmaker[Session], now: datetime,
            gone: Callable[[str | None], bool]) -> int:
    """Rows being sent by a sender that is `gone` (its process died mid-call) wait again, due
    now: the next claim takes them, as it would once their lease ran out. Whether the call
    reached Slack is unknown, as after a lease: at least once. Returns how many."""
    with write_session(factory) as session:
        sending = session.execute(
            select(OutboxRow.id, OutboxRow.owner).where(OutboxRow.status == SENDING)).all()
        ids = [row_id for row_id, owner in sending if gone(owner)]
        if ids:
            session.execute(
                update(OutboxRow).where(OutboxRow.id.in_(ids), OutboxRow.status == SENDING)
                .values(status=PENDING, owner=None, lease_until=None, not_before=now)
                .execution_options(synchronize_session=False))
    return len(ids)


def _owned(row_id: int, owner: str) -> Any:
    return and_(OutboxRow.id == row_id, OutboxRow.owner == owner, OutboxRow.status == SENDING)


def finish(factory: sessionmaker[Session], now: datetime, row_id: int, owner: str,
           status: str, *, error: str | None = None,
           message: MessageAddress | None = None) -> bool:
    """End a claimed row (delivered, failed or dropped); ``message`` records where the message
    it posted went, or that it could not be posted. False if the claim was lost."""
    if status not in FINISHED:
        raise ValueError(f"not a final outbox status: {status}")
    with write_session(factory) as session:
        done = session.execute(
            update(OutboxRow).where(_owned(row_id, owner))
            .values(status=status, finished_at=now, error=error, lease_until=None)
            .returning(OutboxRow.id)
            .execution_options(synchronize_session=False)
        ).first()
        if done is not None and message is not None:
            _record(session, now, message)
        return done is not None


def _record(session: Session, now: datetime, message: MessageAddress) -> None:
    session.merge(OutboxMessage(key=message.key, channel=message.channel, ts=message.ts,
                                thread_ts=message.thread_ts, error=message.error, at=now))
    kind, _, ident = message.key.partition(":")
    if message.ts and message.channel and kind in _DOMAIN:
        model, column = _DOMAIN[kind]
        session.execute(update(model).where(column == ident)
                        .values(channel=message.channel, message_ts=message.ts)
                        .execution_options(synchronize_session=False))


def retry(factory: sessionmaker[Session], now: datetime, row_id: int, owner: str, *,
          delay: float, error: str | None, counted: bool = True) -> bool:
    """Give a claimed row back, due again in ``delay`` seconds; an uncounted retry (a pause
    the sender kept to) does not use up an attempt."""
    values: dict[str, Any] = {"status": PENDING, "owner": None, "lease_until": None,
                              "not_before": now + timedelta(seconds=delay), "error": error}
    if not counted:
        values["attempts"] = OutboxRow.attempts - 1
    with write_session(factory) as session:
        done = session.execute(
            update(OutboxRow).where(_owned(row_id, owner)).values(**values)
            .returning(OutboxRow.id)
            .execution_options(synchronize_session=False)
        ).first()
        return done is not None


def substitute(factory: sessionmaker[Session], now: datetime, row_id: int, owner: str, *,
               error: str | None, message: MessageAddress | None = None) -> bool:
    """The row cannot go where it was addressed (or, substituted, went): it becomes the first
    of its ``instead`` effects (the rest follow it), due now, in the same place in its stream;
    ``message`` as for ``finish``. False when there is nothing instead (or the claim was
    lost)."""
    with write_session(factory) as session:
        row = session.scalars(select(OutboxRow).where(_owned(row_id, owner))).first()
        if row is None or not row.instead:
            return False
        if message is not None:
            _record(session, now, message)
        first, *rest = row.instead
        row.kind, row.payload, row.instead = str(first["kind"]), dict(first["payload"]), rest
        row.message_key = row.parent_key = row.content = None
        row.orphan, row.substituted, row.status = "drop", True, PENDING
        row.owner = row.lease_until = None
        row.attempts, row.not_before, row.error = 0, now, error
        return True


def address(factory: sessionmaker[Session], key: str) -> MessageAddress | None:
    with read_session(factory) as session:
        row = session.get(OutboxMessage, key)
        if row is None:
            return None
        return MessageAddress(row.key, row.channel, row.ts, row.thread_ts, row.error)


def stats(factory: sessionmaker[Session], now: datetime) -> OutboxStats:
    with read_session(factory) as session:
        counts = {str(status): int(n) for status, n in session.execute(
            select(OutboxRow.status, func.count()).group_by(OutboxRow.status))}
        oldest = session.execute(select(func.min(OutboxRow.created_at))
                                 .where(OutboxRow.status.in_((PENDING, SENDING)))).scalar()
        # Rows behind a waiting head are not due before it, whatever their own time.
        next_due = session.execute(select(func.min(OutboxRow.not_before))
                                   .where(OutboxRow.status == PENDING, _head())).scalar()
    waiting = counts.get(PENDING, 0) + counts.get(SENDING, 0)
    return OutboxStats(
        waiting=waiting,
        oldest_seconds=_seconds(now, oldest) if oldest is not None else 0.0,
        next_due_seconds=-_seconds(now, next_due) if next_due is not None else None,
        by_status=counts,
    )


def _seconds(now: datetime, then: datetime) -> float:
    return (now - then).total_seconds()


def prune(factory: sessionmaker[Session], now: datetime) -> int:
    """Forget finished rows after ``KEEP_FINISHED`` and addresses after ``KEEP_ADDRESSES``."""
    with write_session(factory) as session:
        rows = session.execute(
            delete(OutboxRow).where(OutboxRow.status.in_(FINISHED),
                                    OutboxRow.finished_at < now - KEEP_FINISHED)
            .execution_options(synchronize_session=False))
        session.execute(delete(OutboxMessage).where(OutboxMessage.at < now - KEEP_ADDRESSES)
                        .execution_options(synchronize_session=False))
        return int(rows.rowcount)  # type: ignore[attr-defined]
