"""Target locks: leases that let one mutating execution at a time act on a target.

A lease names its holder (an execution) and ends at ``expires_at``; a crashed
process simply stops renewing, and the next ``acquire`` after that time takes the
lock over. Taking a lock is one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE
expires_at <= now``: the database decides the winner, across threads, processes
and replicas. On PostgreSQL that statement also locks the conflicting row even when
its WHERE is false, so reading the holder right after sees the row that won; on
SQLite the whole transaction holds the write lock (``BEGIN IMMEDIATE``).

Leases are compared with the store's clock (the ``clock`` of each ``Store``), so
replicas sharing PostgreSQL need clocks closer together than a lease lasts.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Insert, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from bot.store.db import read_session, write_session
from bot.store.models import TargetLock
from bot.store.records import LockInfo

__all__ = ["acquire", "force_unlock", "get", "release", "release_for", "renew"]

_MAX_TARGET = 255
_COLUMNS = (
    TargetLock.target,
    TargetLock.execution_id,
    TargetLock.actor,
    TargetLock.acquired_at,
    TargetLock.expires_at,
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
    )


def acquire(
    factory: sessionmaker[Session],
    now: datetime,
    target: str,
    *,
    execution_id: str,
    actor: str,
    ttl_seconds: float,
) -> LockInfo:
    """The lock in force afterwards: ours if it was free or expired, else the holder's.

    Acquiring again with the execution that already holds it extends the lease and
    keeps ``acquired_at``.
    """
    _check_target(target)
    expires_at = _lease_end(now, ttl_seconds)
    values = {
        "target": target,
        "execution_id": execution_id,
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
        return _info(holder)


def _take_if_free(session: Session, values: dict[str, Any], now: datetime) -> LockInfo | None:
    """Insert the lease, or overwrite an expired one; None when a live lease is in the way."""
    dialect = session.get_bind().dialect.name
    stmt: Insert
    if dialect == "postgresql":
        pg_stmt = postgresql.insert(TargetLock).values(values)
        stmt = pg_stmt.on_conflict_do_update(
            index_elements=[TargetLock.target],
            set_={name: pg_stmt.excluded[name] for name in values if name != "target"},
            where=TargetLock.expires_at <= now,
        )
    elif dialect == "sqlite":
        lite_stmt = sqlite.insert(TargetLock).values(values)
        stmt = lite_stmt.on_conflict_do_update(
            index_elements=[TargetLock.target],
            set_={name: lite_stmt.excluded[name] for name in values if name != "target"},
            where=TargetLock.expires_at <= now,
        )
    else:
        raise NotImplementedError(f"acquire_lock is not implemented for {dialect}")
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
    """Remove whatever row holds ``target``; returns the lease it ended, None if none was."""
    stmt = delete(TargetLock).where(TargetLock.target == target).returning(*_COLUMNS)
    with write_session(factory) as session:
        row = session.execute(stmt).one_or_none()
    return _info(row) if row is not None and row.expires_at > now else None


def get(factory: sessionmaker[Session], now: datetime, target: str) -> LockInfo | None:
    query = select(*_COLUMNS).where(TargetLock.target == target, TargetLock.expires_at > now)
    with read_session(factory) as session:
        row = session.execute(query).one_or_none()
    return None if row is None else _info(row)


def held(factory: sessionmaker[Session], now: datetime) -> list[LockInfo]:
    """Every lease in force, by target."""
    query = select(*_COLUMNS).where(TargetLock.expires_at > now).order_by(TargetLock.target)
    with read_session(factory) as session:
        return [_info(row) for row in session.execute(query).all()]


def release_for(session: Session, execution_ids: Collection[str]) -> int:
    """Delete the locks held by ``execution_ids``, inside the caller's transaction."""
    if not execution_ids:
        return 0
    result = session.execute(
        delete(TargetLock).where(TargetLock.execution_id.in_(list(execution_ids)))
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
