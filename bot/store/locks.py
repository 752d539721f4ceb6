"""Target locks: leases that let one mutating execution at a time act on a target.

A lease names its holder (an execution) and ends at ``expires_at``; a crashed
process simply stops renewing, and the next ``acquire`` after that time takes the
lock over. Taking a lock is one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE
expires_at <= now``: the database decides the winner, across threads, processes
and replicas. On PostgreSQL that statement also locks the conflicting row even when
its WHERE is false, so reading the holder right after sees the row that won; on
SQLite the whole transaction holds the write lock (``BEGIN IMMEDIATE``).

A target may also be *reserved* for a pending approval request (Atlantis-style): a row with
no ``execution_id`` that names the ``request_id`` and lasts until the request expires. It
keeps every other mutating command off the target while approvers decide; the request's own
execution takes the row over (``acquire`` with that ``request_id``), and deciding the request
any other way drops it (``release_reservation``, in the deciding transaction).

Leases are compared with the store's clock (the ``clock`` of each ``Store``), so
replicas sharing PostgreSQL need clocks closer together than a lease lasts.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.store.db import conflict_insert, read_session, write_session
from bot.store.models import ApprovalRequestRow, Execution, TargetLock
from bot.store.records import LockInfo

__all__ = [
    "acquire",
    "extend_reservation",
    "force_unlock",
    "get",
    "held",
    "release",
    "release_for",
    "release_reservation",
    "renew",
    "reserve",
]

_MAX_TARGET = 255
_COLUMNS = (
    TargetLock.target,
    TargetLock.execution_id,
    TargetLock.actor,
    TargetLock.acquired_at,
    TargetLock.expires_at,
    TargetLock.request_id,
)


def _check_target(target: str) -> None:
    if not target:
        raise ValueError("a lock target must not be empty")
    if len(target) > _MAX_TARGET:
        raise ValueError(f"a lock target is at most {_MAX_TARGET} characters, not {len(target)}")


def _lease_end(now: datetime, ttl_seconds: float) -> datetime:
    if not (math.isfinite(ttl_seconds) and ttl_seconds > 0):
        raise ValueError(f"ttl_seconds must be a positive number of seconds, not {ttl_seconds!r}")
    return now + timedelta(seconds=ttl_seconds)


def _info(row: Any) -> LockInfo:
    return LockInfo(
        target=row.target,
        execution_id=row.execution_id,
        actor=row.actor,
        acquired_at=row.acquired_at,
        expires_at=row.expires_at,
        request_id=row.request_id,
    )


def acquire(
    factory: sessionmaker[Session],
    now: datetime,
    target: str,
    *,
    execution_id: str,
    actor: str,
    ttl_seconds: float,
    request_id: str | None = None,
) -> LockInfo:
    """The lock in force afterwards: ours if it was free or expired, else the holder's.

    Acquiring again with the execution that already holds it extends the lease and
    keeps ``acquired_at``. An execution run for ``request_id`` takes over that request's
    reservation (live or not: nobody else took it meanwhile).
    """
    _check_target(target)
    expires_at = _lease_end(now, ttl_seconds)
    values = {
        "target": target,
        "execution_id": execution_id,
        "request_id": request_id,
        "actor": actor,
        "acquired_at": now,
        "expires_at": expires_at,
    }
    with write_session(factory) as session:
        taken = _take_if_free(session, values, now)
        if taken is not None:
            return taken
        holder = session.scalars(select(TargetLock).where(TargetLock.target == target)).one()
        if holder.execution_id == execution_id:
            holder.expires_at = expires_at
        elif (request_id is not None and holder.execution_id is None
              and holder.request_id == request_id):
            holder.execution_id, holder.actor = execution_id, actor
            holder.acquired_at, holder.expires_at = now, expires_at
        return _info(holder)


def reserve(session: Session, now: datetime, target: str, *, request_id: str, actor: str,
            until: datetime) -> LockInfo:
    """Reserve ``target`` for the pending request ``request_id`` until ``until``, inside the
    caller's transaction (the one creating the request); the lock in force afterwards, which
    is the caller's to compare (its ``request_id``)."""
    _check_target(target)
    if until <= now:
        raise ValueError("a reservation must end after it starts")
    values = {
        "target": target,
        "execution_id": None,
        "request_id": request_id,
        "actor": actor,
        "acquired_at": now,
        "expires_at": until,
    }
    taken = _take_if_free(session, values, now)
    if taken is not None:
        return taken
    return _info(session.scalars(select(TargetLock).where(TargetLock.target == target)).one())


def release_reservation(session: Session, request_id: str) -> int:
    """Drop the reservation of ``request_id`` (denied, cancelled, expired, void), inside the
    caller's transaction; a row its execution took over is that execution's to release."""
    result = session.execute(delete(TargetLock).where(
        TargetLock.request_id == request_id, TargetLock.execution_id.is_(None)))
    return int(result.rowcount)  # type: ignore[attr-defined]


def extend_reservation(session: Session, request_id: str, until: datetime) -> None:
    """An approved request keeps its target until its run starts (``until``), even if it was
    approved just before it would have expired."""
    session.execute(update(TargetLock).where(
        TargetLock.request_id == request_id, TargetLock.execution_id.is_(None),
        TargetLock.expires_at < until).values(expires_at=until))


def _take_if_free(session: Session, values: dict[str, Any], now: datetime) -> LockInfo | None:
    """Insert the lease, or overwrite an expired one; None when a live lease is in the way."""
    insert = conflict_insert(session.get_bind().dialect.name, TargetLock).values(values)
    stmt = insert.on_conflict_do_update(
        index_elements=[TargetLock.target],
        set_={name: insert.excluded[name] for name in values if name != "target"},
        where=TargetLock.expires_at <= now,
    )
    # RETURNING gives no row when the conflict's WHERE was false: a live lease.
    row = session.execute(stmt.returning(*_COLUMNS)).one_or_none()
    return None if row is None else _info(row)


def renew(
    factory: sessionmaker[Session],
    now: datetime,
    target: str,
    *,
    execution_id: str,
    ttl_seconds: float,
) -> bool:
    """Extend our lease; False if it is not ours or has already run out."""
    stmt = (
        update(TargetLock)
        .where(
            TargetLock.target == target,
            TargetLock.execution_id == execution_id,
            TargetLock.expires_at > now,
        )
        .values(expires_at=_lease_end(now, ttl_seconds))
        .returning(TargetLock.target)
    )
    with write_session(factory) as session:
        return session.execute(stmt).one_or_none() is not None


def release(
    factory: sessionmaker[Session], now: datetime, target: str, *, execution_id: str
) -> bool:
    """Drop our lease; False if we no longer held it (someone else's, gone, or expired).

    A row of ours whose lease ran out is deleted too: nobody else can be relying on it.
    """
    stmt = (
        delete(TargetLock)
        .where(TargetLock.target == target, TargetLock.execution_id == execution_id)
        .returning(TargetLock.expires_at)
    )
    with write_session(factory) as session:
        expires_at = session.execute(stmt).scalar_one_or_none()
    return expires_at is not None and expires_at > now


def force_unlock(factory: sessionmaker[Session], now: datetime, target: str) -> LockInfo | None:
    """Remove the execution's lease on ``target``; returns the lease it ended, None if none
    was. A reservation is left alone: it ends with its request (cancel or deny it)."""
    stmt = delete(TargetLock).where(
        TargetLock.target == target, TargetLock.execution_id.is_not(None)).returning(*_COLUMNS)
    with write_session(factory) as session:
        row = session.execute(stmt).one_or_none()
    return _info(row) if row is not None and row.expires_at > now else None


def get(factory: sessionmaker[Session], now: datetime, target: str) -> LockInfo | None:
    query = select(*_COLUMNS).where(TargetLock.target == target, TargetLock.expires_at > now)
    with read_session(factory) as session:
        row = session.execute(query).one_or_none()
    return None if row is None else _info(row)


def held(factory: sessionmaker[Session], now: datetime) -> list[LockInfo]:
    """Every lease and reservation in force, by target, with the command of its execution or
    request."""
    query = (
        select(*_COLUMNS, Execution.command.label("ex_command"),
               ApprovalRequestRow.command.label("rq_command"))
        .outerjoin(Execution, Execution.id == TargetLock.execution_id)
        .outerjoin(ApprovalRequestRow, ApprovalRequestRow.id == TargetLock.request_id)
        .where(TargetLock.expires_at > now)
        .order_by(TargetLock.target)
    )
    with read_session(factory) as session:
        rows = session.execute(query).all()
    return [LockInfo(target=row.target, execution_id=row.execution_id, actor=row.actor,
                     acquired_at=row.acquired_at, expires_at=row.expires_at,
                     request_id=row.request_id, command=row.ex_command or row.rq_command)
            for row in rows]


def release_for(session: Session, execution_ids: Collection[str]) -> int:
    """Delete the locks held by ``execution_ids``, inside the caller's transaction."""
    if not execution_ids:
        return 0
    result = session.execute(
        delete(TargetLock).where(TargetLock.execution_id.in_(list(execution_ids)))
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
