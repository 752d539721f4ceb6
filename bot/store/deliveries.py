"""Dedup of incoming deliveries, so a Slack retry or replay runs nothing twice.

The claim is one ``INSERT ... ON CONFLICT DO NOTHING`` on a primary key: the
database, not a Python lock, decides the winner, so it holds across threads,
processes and replicas. Keys older than a day are pruned; Slack retries within
minutes, so a day is plenty.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.dml import ReturningInsert

from bot.store.db import write_session
from bot.store.models import DeliveryClaim

__all__ = ["KEEP_FOR", "claim", "prune"]

KEEP_FOR = timedelta(days=1)
_MAX_KEY = 255


def _normalize(key: str) -> str:
    if not key:
        raise ValueError("a delivery key must not be empty")
    if len(key) <= _MAX_KEY:
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def claim(factory: sessionmaker[Session], now: datetime, key: str, *, prune_first: bool) -> bool:
    """True if ``key`` was not claimed before (within ``KEEP_FOR``); False otherwise."""
    values = {"key": _normalize(key), "claimed_at": now}
    with write_session(factory) as session:
        if prune_first:
            _prune(session, now)
        stmt = _insert_if_absent(session.get_bind().dialect.name, values)
        # RETURNING rather than rowcount, which psycopg does not report here.
        return session.execute(stmt).scalar_one_or_none() is not None


def _insert_if_absent(dialect: str, values: dict[str, object]) -> ReturningInsert[tuple[str]]:
    if dialect == "postgresql":
        pg_stmt = postgresql.insert(DeliveryClaim).values(values).on_conflict_do_nothing()
        return pg_stmt.returning(DeliveryClaim.key)
    if dialect == "sqlite":
        lite_stmt = sqlite.insert(DeliveryClaim).values(values).on_conflict_do_nothing()
        return lite_stmt.returning(DeliveryClaim.key)
    raise NotImplementedError(f"claim_delivery is not implemented for {dialect}")


def prune(factory: sessionmaker[Session], now: datetime) -> int:
    with write_session(factory) as session:
        return _prune(session, now)


def _prune(session: Session, now: datetime) -> int:
    result = session.execute(delete(DeliveryClaim).where(DeliveryClaim.claimed_at < now - KEEP_FOR))
    return int(result.rowcount)  # type: ignore[attr-defined]
