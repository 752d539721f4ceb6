"""The Alertmanager silences opsbot made, remembered so alert messages can show them (who,
until when) and who expired them. Alertmanager stays the truth of what is silenced: a row
here only describes what opsbot did."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.store.db import read_session, write_session
from bot.store.models import SilenceRow
from bot.store.records import SilenceRecord

__all__ = ["expired", "made", "recent"]


def made(factory: sessionmaker[Session], now: datetime, silence_id: str, *,
         matchers: dict[str, str], created_by: str, ends_at: datetime,
         execution_id: str | None) -> None:
    with write_session(factory) as session:
        session.merge(SilenceRow(
            id=silence_id, matchers=dict(matchers), created_by=created_by, created_at=now,
            ends_at=ends_at, execution_id=execution_id, expired_by=None, expired_at=None))


def expired(factory: sessionmaker[Session], now: datetime, silence_id: str,
            by: str) -> SilenceRecord | None:
    """Record that ``by`` expired the silence; the row afterwards, None if opsbot did not
    make it (it is expired in Alertmanager all the same)."""
    with write_session(factory) as session:
        session.execute(update(SilenceRow).where(SilenceRow.id == silence_id)
                        .values(expired_by=by, expired_at=now, ends_at=now)
                        .execution_options(synchronize_session=False))
        row = session.get(SilenceRow, silence_id, populate_existing=True)
        return None if row is None else _record(row)


def recent(factory: sessionmaker[Session], now: datetime, *, keep: timedelta,
           limit: int = 200) -> list[SilenceRecord]:
    """Silences in force, and those that ended (or were expired) within ``keep``; newest
    first."""
    query = (
        select(SilenceRow)
        .where(or_(SilenceRow.ends_at > now - keep, SilenceRow.expired_at > now - keep))
        .order_by(SilenceRow.created_at.desc(), SilenceRow.id)
        .limit(limit)
    )
    with read_session(factory) as session:
        return [_record(row) for row in session.scalars(query)]


def _record(row: SilenceRow) -> SilenceRecord:
    return SilenceRecord(
        id=row.id, matchers={str(k): str(v) for k, v in row.matchers.items()},
        created_by=row.created_by, created_at=row.created_at, ends_at=row.ends_at,
        execution_id=row.execution_id, expired_by=row.expired_by, expired_at=row.expired_at)
