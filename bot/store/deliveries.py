"""Dedup of incoming deliveries, so a Slack retry or replay runs nothing twice.

The claim is one ``INSERT ... ON CONFLICT DO NOTHING`` on a primary key: the
database, not a Python lock, decides the winner, so it holds across threads,
processes and replicas. Keys older than a day are pruned; Slack retries within
minutes, so a day is plenty.

A Slack trigger is queued in its claim before it is acked (`accept`): the claim row also holds
the trigger as JSON and the replica that acked it. Its work starts by `start`, a conditional
update only one caller wins; a claim with a trigger and no start is work acked but never
started (the process died in between), which the leader finds with `unstarted`.
"""

from __future__ import annotations

import functools
import hashlib
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Connection, Table, delete, select, update
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.dml import ReturningInsert

from bot.store.batch import SqliteStatement
from bot.store.db import conflict_insert, write_session
from bot.store.models import DeliveryClaim

__all__ = ["KEEP_FOR", "Queued", "accept", "accept_in", "accept_raw", "claim", "prune", "start",
           "unstarted"]

KEEP_FOR = timedelta(days=1)
_CLAIMS = cast(Table, DeliveryClaim.__table__)
_MAX_KEY = 255


def _normalize(key: str) -> str:
    if not key:
        raise ValueError("a delivery key must not be empty")
    if len(key) <= _MAX_KEY:
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Queued:
    """A trigger acked and not started: its claim key, the trigger as JSON, who acked it."""

    key: str
    trigger: str
    owner: str | None
    claimed_at: datetime


def claim(factory: sessionmaker[Session], now: datetime, key: str, *, prune_first: bool) -> bool:
    """True if ``key`` was not claimed before (within ``KEEP_FOR``); False otherwise."""
    return _claim(factory, now, {"key": _normalize(key), "claimed_at": now}, prune_first)


def accept(factory: sessionmaker[Session], now: datetime, key: str, trigger: str, owner: str,
           *, prune_first: bool) -> bool:
    """Claim ``key`` and queue ``trigger`` with it, in one transaction: True the first time,
    False for a duplicate (nothing queued)."""
    with write_session(factory) as session:
        return accept_in(session, now, key, trigger, owner, prune_first=prune_first)


def accept_in(connection: Connection | Session, now: datetime, key: str, trigger: str,
              owner: str, *, prune_first: bool) -> bool:
    """`accept` inside the caller's transaction (a group commit's)."""
    return _insert(connection, now, {"key": _normalize(key), "claimed_at": now,
                                     "trigger": trigger, "owner": owner}, prune_first)


def accept_raw(raw: sqlite3.Connection, now: datetime, key: str, trigger: str,
               owner: str) -> bool:
    """`accept_in` on SQLite's own connection (a group commit's loop path), without pruning."""
    values = {"key": _normalize(key), "claimed_at": now, "trigger": trigger, "owner": owner}
    return _sqlite_accept()(raw, values) is not None


@functools.cache
def _sqlite_accept() -> SqliteStatement:
    return SqliteStatement(_insert_if_absent("sqlite"), _CLAIMS,
                           ["key", "claimed_at", "trigger", "owner"])


def start(factory: sessionmaker[Session], now: datetime, key: str) -> bool:
    """Mark the queued trigger of ``key`` started: True for the one caller that did it."""
    with write_session(factory) as session:
        stmt = (update(DeliveryClaim)
                .where(DeliveryClaim.key == _normalize(key), DeliveryClaim.trigger.is_not(None),
                       DeliveryClaim.started_at.is_(None))
                .values(started_at=now)
                .returning(DeliveryClaim.key))
        return session.execute(stmt).scalar_one_or_none() is not None


def unstarted(factory: sessionmaker[Session], before: datetime, limit: int = 100) -> list[Queued]:
    """Triggers acked before ``before`` whose work never started, oldest first."""
    with factory() as session:
        rows = session.execute(
            select(DeliveryClaim.key, DeliveryClaim.trigger, DeliveryClaim.owner,
                   DeliveryClaim.claimed_at)
            .where(DeliveryClaim.trigger.is_not(None), DeliveryClaim.started_at.is_(None),
                   DeliveryClaim.claimed_at < before)
            .order_by(DeliveryClaim.claimed_at)
            .limit(limit)).all()
    return [Queued(r.key, str(r.trigger), r.owner, r.claimed_at) for r in rows]


def _claim(factory: sessionmaker[Session], now: datetime, values: dict[str, object],
           prune_first: bool) -> bool:
    with write_session(factory) as session:
        return _insert(session, now, values, prune_first)


def _insert(connection: Connection | Session, now: datetime, values: dict[str, object],
            prune_first: bool) -> bool:
    if prune_first:
        _prune(connection, now)
    dialect = connection.dialect if isinstance(connection, Connection) \
        else connection.get_bind().dialect
    stmt = _insert_if_absent(dialect.name)
    # RETURNING rather than rowcount, which psycopg does not report here.
    return connection.execute(stmt, values).scalar_one_or_none() is not None


@functools.cache
def _insert_if_absent(dialect: str) -> ReturningInsert[tuple[str]]:
    # Built once per dialect: SQLAlchemy then reuses its compiled form for every claim.
    return conflict_insert(dialect, _CLAIMS).on_conflict_do_nothing().returning(_CLAIMS.c.key)


def prune(factory: sessionmaker[Session], now: datetime) -> int:
    with write_session(factory) as session:
        return _prune(session, now)


def _prune(connection: Connection | Session, now: datetime) -> int:
    table = _CLAIMS
    result = connection.execute(delete(table).where(table.c.claimed_at < now - KEEP_FOR))
    return int(result.rowcount)  # type: ignore[attr-defined]
