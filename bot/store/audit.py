"""The append-only, hash-chained audit log: who asked for what, and what came of it.

Each record stores ``prev_hash`` (the previous record's ``hash``; 64 zeros for
the first) and ``hash = sha256(prev_hash + canonical JSON of its fields)``.
The ``audit_head`` row holds the last ``seq`` and ``hash`` and is updated in the
same transaction as each append, so cutting records off the end is detected
too. Appends are serialized across processes: ``BEGIN IMMEDIATE`` on SQLite,
``SELECT ... FOR UPDATE`` of the head row on PostgreSQL.

What the chain cannot detect: someone with write access who recomputes every
hash after their change and updates the head to match. Exporting records to
another system (``export_audit``) is the defence against that.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.markup import plain
from bot.store.db import read_session, write_session
from bot.store.errors import AuditChainBroken
from bot.store.models import GENESIS_HASH, AuditHead, AuditRecord

__all__ = [
    "AuditEntry",
    "AuditProblem",
    "append",
    "canonical_json",
    "compute_hash",
    "export",
    "format_time",
    "query",
    "verify",
]

_HEAD_ID = 1
_EXPORT_BATCH = 500

ProblemKind = Literal["edited", "missing", "inserted", "truncated", "head"]


@dataclass(frozen=True)
class AuditEntry:
    """What the caller knows about one audited event; the store adds ``seq`` and ``time``."""

    actor: str
    source: str
    command: str
    environment: str | None
    target: str | None
    outcome: str
    execution_id: str | None = None
    request_id: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditProblem:
    """One thing wrong with the chain; ``seq`` is None when no single record is at fault."""

    seq: int | None
    kind: ProblemKind
    message: str

    def __str__(self) -> str:
        return self.message


def canonical_json(value: Any) -> str:
    """Sorted keys, fixed separators: the same data always gives the same bytes."""
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=str,
    )


def format_time(value: datetime) -> str:
    """ISO 8601 in UTC with microseconds, e.g. ``2025-01-31T09:30:00.000000Z``."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _hashed_fields(record: AuditRecord, details: Any) -> dict[str, Any]:
    return {
        "seq": record.seq,
        "time": format_time(record.time),
        "actor": record.actor,
        "source": record.source,
        "command": record.command,
        "environment": record.environment,
        "target": record.target,
        "outcome": record.outcome,
        "execution_id": record.execution_id,
        "request_id": record.request_id,
        "details": details,
    }


def compute_hash(prev_hash: str, record: AuditRecord, details: Any) -> str:
    document = canonical_json(_hashed_fields(record, details))
    return hashlib.sha256((prev_hash + document).encode("utf-8")).hexdigest()


def _lock_head(session: Session) -> AuditHead:
    # On SQLite the write transaction already holds the database lock; FOR UPDATE
    # is what serializes appenders on PostgreSQL.
    head = session.scalars(
        select(AuditHead).where(AuditHead.id == _HEAD_ID).with_for_update()
    ).one_or_none()
    if head is not None:
        return head
    if session.scalar(select(AuditRecord.seq).limit(1)) is not None:
        raise AuditChainBroken(
            "the audit head row is missing while records exist; run `opsbot audit verify`"
        )
    # Tables created by hand rather than by the migration: start a fresh chain.
    head = AuditHead(id=_HEAD_ID, seq=0, hash=GENESIS_HASH, updated_at=datetime.now(UTC))
    session.add(head)
    session.flush()
    return head


def _plain(value: Any) -> Any:
    if isinstance(value, str):
        return plain(value)
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def append(factory: sessionmaker[Session], entry: AuditEntry, now: datetime) -> int:
    """Append ``entry`` at the end of the chain and return its sequence number."""
    with write_session(factory) as session:
        return append_in(session, entry, now)


def append_in(session: Session, entry: AuditEntry, now: datetime) -> int:
    """`append`, in the caller's write transaction: the entry is committed with what the
    transaction records (an automatic run's decision), or not at all."""
    # Round-trip details through JSON so what we hash is exactly what we read back. Texts are
    # kept as the console shows them: an export is read by programs, not by a chat renderer.
    details_text = canonical_json(_plain(dict(entry.details)))
    details = json.loads(details_text)
    head = _lock_head(session)
    record = AuditRecord(
        seq=head.seq + 1,
        # Databases keep microseconds; never hash more precision than is stored.
        time=now.astimezone(UTC),
        actor=entry.actor,
        source=entry.source,
        command=entry.command,
        environment=entry.environment,
        target=entry.target,
        outcome=entry.outcome,
        execution_id=entry.execution_id,
        request_id=entry.request_id,
        details=details_text,
        prev_hash=head.hash,
    )
    record.hash = compute_hash(head.hash, record, details)
    session.add(record)
    head.seq, head.hash, head.updated_at = record.seq, record.hash, record.time
    return record.seq


def verify(factory: sessionmaker[Session]) -> list[AuditProblem]:
    """Walk the whole chain once; an empty list means intact."""
    problems: list[AuditProblem] = []
    with read_session(factory, snapshot=True) as session:
        head = session.get(AuditHead, _HEAD_ID)
        last_seq, last_hash = 0, GENESIS_HASH
        rows = session.scalars(
            select(AuditRecord).order_by(AuditRecord.seq).execution_options(yield_per=_EXPORT_BATCH)
        )
        for record in rows:
            problems.extend(_check_record(record, last_seq, last_hash))
            last_seq, last_hash = record.seq, record.hash
        problems.extend(_check_head(head, last_seq, last_hash))
    return problems


def _check_record(record: AuditRecord, last_seq: int, last_hash: str) -> list[AuditProblem]:
    problems: list[AuditProblem] = []
    seq = record.seq
    try:
        details = json.loads(record.details)
    except ValueError:
        problems.append(
            AuditProblem(seq, "edited", f"Record {seq} was edited: its details are not valid JSON.")
        )
    else:
        if compute_hash(record.prev_hash, record, details) != record.hash:
            problems.append(
                AuditProblem(
                    seq,
                    "edited",
                    f"Record {seq} was edited: its contents no longer match its hash.",
                )
            )
    if seq > last_seq + 1:
        gap = f"{last_seq + 1}" if seq == last_seq + 2 else f"{last_seq + 1} to {seq - 1}"
        problems.append(
            AuditProblem(
                last_seq + 1,
                "missing",
                f"Record {gap} is missing: the sequence jumps from {last_seq} to {seq}.",
            )
        )
    elif record.prev_hash != last_hash:
        # A gap already explains a broken link; report the link only when seqs are contiguous.
        problems.append(
            AuditProblem(
                seq,
                "inserted",
                f"Record {seq} does not follow record {last_seq}: its prev_hash does not match "
                f"(a record was inserted, replaced or rewritten before it).",
            )
        )
    return problems


def _check_head(head: AuditHead | None, last_seq: int, last_hash: str) -> list[AuditProblem]:
    if head is None:
        return [AuditProblem(None, "head", "The audit head row is missing.")]
    if head.seq > last_seq:
        return [
            AuditProblem(
                last_seq + 1,
                "truncated",
                f"The log ends at record {last_seq} but the head says {head.seq}: "
                f"records after {last_seq} were deleted.",
            )
        ]
    if head.seq < last_seq:
        return [
            AuditProblem(
                head.seq + 1,
                "inserted",
                f"Records after {head.seq} were added without updating the head "
                f"(the log ends at record {last_seq}).",
            )
        ]
    if head.hash != last_hash:
        return [
            AuditProblem(
                last_seq,
                "head",
                f"The head's hash does not match record {last_seq}: "
                f"the last record was replaced or the head was edited.",
            )
        ]
    return []


def export(
    factory: sessionmaker[Session], since: datetime | None = None
) -> Iterator[dict[str, Any]]:
    """Records in ``seq`` order as plain dicts, fetched in short batches.

    No transaction stays open between batches, so a slow consumer holds no lock.
    """
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    after = 0
    while True:
        query = select(AuditRecord).where(AuditRecord.seq > after)
        if since is not None:
            query = query.where(AuditRecord.time >= since)
        query = query.order_by(AuditRecord.seq).limit(_EXPORT_BATCH)
        with read_session(factory) as session:
            batch = [_as_dict(record) for record in session.scalars(query)]
        yield from batch
        if len(batch) < _EXPORT_BATCH:
            return
        after = batch[-1]["seq"]


def query(
    factory: sessionmaker[Session],
    *,
    environment: str | None,
    target: str | None,
    outcomes: Sequence[str] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Newest records first (by ``seq``), as ``export`` shapes them, optionally filtered.

    ``outcomes`` keeps records with any of those outcomes; an empty sequence keeps none.
    """
    if isinstance(outcomes, str):
        raise TypeError("outcomes must be a sequence of outcomes, not one string")
    if limit < 0:
        raise ValueError(f"limit must not be negative, not {limit}")
    statement = select(AuditRecord)
    if environment is not None:
        statement = statement.where(AuditRecord.environment == environment)
    if target is not None:
        statement = statement.where(AuditRecord.target == target)
    if outcomes is not None:
        statement = statement.where(AuditRecord.outcome.in_(list(outcomes)))
    statement = statement.order_by(AuditRecord.seq.desc()).limit(limit)
    with read_session(factory) as session:
        return [_as_dict(record) for record in session.scalars(statement)]


def _as_dict(record: AuditRecord) -> dict[str, Any]:
    try:
        details: Any = json.loads(record.details)
    except ValueError:
        details = record.details  # exported as found; verify reports it
    out = _hashed_fields(record, details)
    out["prev_hash"] = record.prev_hash
    out["hash"] = record.hash
    return out
