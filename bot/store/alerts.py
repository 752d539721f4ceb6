"""Alert intake and the guardrails of automatic runs.

- A notification is committed before the webhook is answered, and processed afterwards;
  ``processed_at`` stays empty until it was, so a restart picks up what was left.
- A notification is processed by one replica at a time: the worker claims it (``claimed_by``
  until ``claimed_until``, ``SKIP LOCKED`` on PostgreSQL); a claim that runs out is free again.
- An alert state (fingerprint, status, startsAt) is claimed by the first notification that
  carries it; the same notification may claim it again when it is processed a second time
  after a crash, any other notification may not (that is the dedup).
- A decision on (alert state, runbook) is taken once: the unique key returns the earlier
  decision to a second processing. Deciding reads and writes under one lock (SQLite: the
  write transaction; PostgreSQL: a transaction-scoped advisory lock), so cooldowns, rate
  limits and the concurrency limit hold across threads and replicas.
"""

from __future__ import annotations

import functools
import hashlib
import sqlite3
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Table,
    Text,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.dml import Insert

from bot.markup import code
from bot.messages import rough_span
from bot.store.audit import AuditEntry, append_in
from bot.store.batch import PlainInsert, ServerRows, SqliteStatement
from bot.store.db import conflict_insert, read_session, write_session
from bot.store.ids import new_id
from bot.store.models import (
    AlertGroupRow,
    AlertNotificationRow,
    AlertRunRow,
    AlertStateClaim,
    AutomationBreakerRow,
    AutomationPauseRow,
)

__all__ = [
    "ACTIVE_RUN_STATUSES",
    "INSERT_NOTIFICATION",
    "AlertGroupRecord",
    "AlertRunRecord",
    "AutomationStatus",
    "Breaker",
    "DecisionAsked",
    "GroupUpdate",
    "Guardrails",
    "Pause",
    "StoredNotification",
    "group_hash",
]

#: Runs that count against the concurrency limit.
ACTIVE_RUN_STATUSES = ("pending", "running")
#: Decisions that allowed a run (a shadow run is a dry run, and counts like a real one).
RAN = ("run", "shadow")
_DECIDE_LOCK_KEY = 0x0B5B_07A1_E27


def group_hash(group_key: str) -> str:
    return hashlib.sha256(group_key.encode("utf-8")).hexdigest()


def _key(key: str) -> str:
    return key if len(key) <= 255 else "sha256:" + hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class StoredNotification:
    id: str
    received_at: datetime
    payload: dict[str, Any]


@dataclass(frozen=True)
class AlertGroupRecord:
    group_hash: str
    group_key: str
    status: str
    alerts: dict[str, Any]  # fingerprint -> last notified state (see bot.alerts.processor)
    channel: str | None
    message_ts: str | None


@dataclass(frozen=True)
class AlertRunRecord:
    id: str
    at: datetime
    group_hash: str
    fingerprint: str
    alertname: str
    runbook: str
    environment: str | None
    target: str | None
    mutating: bool
    decision: str
    detail: str
    status: str
    execution_id: str | None
    request_id: str | None
    finished_at: datetime | None
    created: bool = False  # True when this call took the decision, False when it found it


@dataclass(frozen=True)
class Guardrails:
    """Limits a decision checks, from the runbook's alert trigger and the config."""

    cooldown: timedelta
    max_runs: int
    window: timedelta
    max_concurrent: int
    shadow: bool


@dataclass(frozen=True)
class Pause:
    scope: str  # "*" or an environment
    until: datetime | None
    actor: str
    reason: str | None


@dataclass(frozen=True)
class Breaker:
    environment: str
    target: str
    failures: int
    opened_at: datetime | None


@dataclass(frozen=True)
class AutomationStatus:
    pauses: list[Pause]
    breakers: list[Breaker]  # only open ones
    recent: list[AlertRunRecord]  # the latest decisions, newest first


# -- notifications ----------------------------------------------------------------------------


def record_notification(factory: sessionmaker[Session], now: datetime, *, group_key: str,
                        receiver: str, status: str, payload: dict[str, Any]) -> str:
    with write_session(factory) as session:
        return record_notification_in(session, now, group_key=group_key, receiver=receiver,
                                      status=status, payload=payload)


def record_notification_in(connection: Connection | Session, now: datetime, *, group_key: str,
                           receiver: str, status: str, payload: dict[str, Any]) -> str:
    """`record_notification` inside the caller's transaction (a group commit's)."""
    return insert_notification(connection, notification_row(
        now, group_key=group_key, receiver=receiver, status=status, payload=payload))


def notification_row(now: datetime, *, group_key: str, receiver: str, status: str,
                     payload: dict[str, Any]) -> dict[str, Any]:
    """The row of a notification received `now`, with its new id (`INSERT_NOTIFICATION`'s
    parameters)."""
    return {"id": new_id("an"), "received_at": now, "group_hash": group_hash(group_key),
            "receiver": receiver[:200], "status": status, "payload": payload,
            "processed_at": None}


def insert_notification(connection: Connection | Session, row: dict[str, Any]) -> str:
    """`row` (`notification_row`) inserted in the caller's transaction; its id."""
    connection.execute(INSERT_NOTIFICATION, row)
    return str(row["id"])


def insert_notification_raw(raw: sqlite3.Connection, row: dict[str, Any],
                            payload_json: str | None = None) -> str:
    """`insert_notification` on SQLite's own connection (a group commit's loop path);
    `payload_json`, the payload as JSON text when the caller has it, is stored as it is."""
    if payload_json is None:
        _sqlite_insert_notification()(raw, row)
    else:
        _sqlite_insert_notification()(raw, {**row, "payload": payload_json}, ("payload",))
    return str(row["id"])


# Built once: SQLAlchemy then reuses its compiled form for every notification.
_NOTIFICATIONS = cast(Table, AlertNotificationRow.__table__)
INSERT_NOTIFICATION = insert(_NOTIFICATIONS)


@functools.cache
def _insert_notification_text() -> Insert:
    """PostgreSQL: the payload bound as the JSON text it arrived as (`payload_text`, with
    every other column of `notification_row` but `payload`), kept by the server as it is
    (`json`, checked, not rebuilt), instead of dumped again from the parsed document in the
    commit thread (built on first use: PostgreSQL's dialect is imported only where it is
    used)."""
    from sqlalchemy.dialects import postgresql

    return insert(_NOTIFICATIONS).values(
        payload=sql_cast(bindparam("payload_text", type_=Text()), postgresql.JSON()))


#: The PostgreSQL insert of a notification (`_insert_notification_text`) for several rows in
#: one statement (a group commit's).
NOTIFICATION_ROWS = ServerRows(_NOTIFICATIONS, [
    ("id", "id", None), ("received_at", "received_at", None), ("group_hash", "group_hash", None),
    ("receiver", "receiver", None), ("status", "status", None),
    ("payload", "payload_text", "JSON"), ("processed_at", "processed_at", None)])


def notification_insert(row: dict[str, Any], payload_json: str | None, dialect: str,
                        ) -> PlainInsert[str]:
    """The plain insert of `row` (a group commit's thread path), answering its id."""
    if payload_json is None or dialect != "postgresql":
        return PlainInsert(INSERT_NOTIFICATION, row, str(row["id"]))
    values = {k: v for k, v in row.items() if k != "payload"}
    values["payload_text"] = payload_json
    return PlainInsert(_insert_notification_text(), values, str(row["id"]), NOTIFICATION_ROWS)


@functools.cache
def _sqlite_insert_notification() -> SqliteStatement:
    return SqliteStatement(INSERT_NOTIFICATION, _NOTIFICATIONS,
                           ["id", "received_at", "group_hash", "receiver", "status", "payload",
                            "processed_at"])


def unprocessed(factory: sessionmaker[Session], limit: int) -> list[StoredNotification]:
    with read_session(factory) as session:
        rows = session.scalars(
            select(AlertNotificationRow)
            .where(AlertNotificationRow.processed_at.is_(None))
            .order_by(AlertNotificationRow.received_at, AlertNotificationRow.id)
            .limit(limit)
        ).all()
        return [StoredNotification(r.id, r.received_at, r.payload) for r in rows]


def claim_unprocessed(factory: sessionmaker[Session], now: datetime, owner: str, limit: int,
                      lease: timedelta) -> list[StoredNotification]:
    """Up to `limit` unprocessed notifications no other replica is processing, claimed for
    `owner` until `now + lease` (a replica that dies holding them frees them by then)."""
    free = or_(AlertNotificationRow.claimed_until.is_(None),
               AlertNotificationRow.claimed_until < now,
               AlertNotificationRow.claimed_by == owner)
    query = (select(AlertNotificationRow)
             .where(AlertNotificationRow.processed_at.is_(None), free)
             .order_by(AlertNotificationRow.received_at, AlertNotificationRow.id)
             .limit(limit))
    with write_session(factory) as session:
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = session.scalars(query).all()
        for row in rows:
            row.claimed_by, row.claimed_until = owner, now + lease
        return [StoredNotification(r.id, r.received_at, r.payload) for r in rows]


def get_notification(factory: sessionmaker[Session], nid: str) -> StoredNotification | None:
    with read_session(factory) as session:
        row = session.get(AlertNotificationRow, nid)
        return StoredNotification(row.id, row.received_at, row.payload) if row else None


def mark_processed(factory: sessionmaker[Session], now: datetime, nids: Collection[str]) -> None:
    """The notifications `nids` are processed, in one transaction."""
    with write_session(factory) as session:
        for part in _parts(sorted(set(nids))):
            session.execute(update(AlertNotificationRow)
                            .where(AlertNotificationRow.id.in_(part),
                                   AlertNotificationRow.processed_at.is_(None))
                            .values(processed_at=now)
                            .execution_options(synchronize_session=False))


def claim_states(factory: sessionmaker[Session], now: datetime,
                 claims: Sequence[tuple[str, Collection[str]]]) -> dict[str, set[str]]:
    """For each (notification id, alert state keys) of `claims`, in the notifications' order:
    the states that notification owns (the first to carry them, or, processed again, the one
    that claimed them before). One transaction for them all, not one per alert or
    notification."""
    first: dict[str, str] = {}  # key as stored -> the first notification of `claims` with it
    for nid, keys in claims:
        for key in keys:
            first.setdefault(_key(key), nid)
    holders: dict[str, str] = {}
    if first:
        # In one order everywhere: replicas claiming overlapping states at once then wait for
        # each other's rows one after the other, and never each for the other (a deadlock).
        wanted = sorted(first)
        with write_session(factory) as session:
            # One statement, executed for each row: its compiled form is cached once, where
            # a multi-row VALUES would be compiled (and cached) anew for each number of rows.
            session.execute(
                conflict_insert(session.get_bind().dialect.name, AlertStateClaim)
                .on_conflict_do_nothing(),
                [{"key": key, "notification_id": first[key], "seen_at": now} for key in wanted])
            for part in _parts(wanted):
                holders.update((key, nid) for key, nid in session.execute(
                    select(AlertStateClaim.key, AlertStateClaim.notification_id)
                    .where(AlertStateClaim.key.in_(part))))
    return {nid: {key for key in keys if holders.get(_key(key)) == nid} for nid, keys in claims}


#: Values in one IN (...): well under the parameters a statement may carry (SQLite: 32,766;
#: PostgreSQL: 65,535).
_VALUES_PER_STATEMENT = 1000


def _parts(values: Sequence[Any], size: int = _VALUES_PER_STATEMENT) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def prune(factory: sessionmaker[Session], now: datetime, keep: timedelta) -> None:
    """Forget alert states and processed notifications older than `keep`."""
    with write_session(factory) as session:
        session.execute(delete(AlertStateClaim).where(AlertStateClaim.seen_at < now - keep))
        session.execute(delete(AlertNotificationRow).where(
            AlertNotificationRow.processed_at.is_not(None),
            AlertNotificationRow.received_at < now - keep,
        ))


# -- groups -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupUpdate:
    """A notification's news for its group: `alerts` is fingerprint -> state."""

    group_key: str
    receiver: str
    alerts: dict[str, Any]


def update_groups(factory: sessionmaker[Session], now: datetime,
                  updates: Sequence[GroupUpdate]) -> dict[str, AlertGroupRecord]:
    """Merge each update's alerts into its group, in order (a newer state replaces an older),
    in one transaction; the groups as they end, by group hash."""
    with write_session(factory) as session:
        rows: dict[str, AlertGroupRow] = {}
        for news in updates:
            key = group_hash(news.group_key)
            row = rows.get(key) or session.get(AlertGroupRow, key)
            if row is None:
                row = AlertGroupRow(group_hash=key, group_key=news.group_key,
                                    receiver=news.receiver[:200], status="firing", alerts={},
                                    channel=None, message_ts=None, created_at=now,
                                    updated_at=now)
                session.add(row)
            rows[key] = row
            merged = dict(row.alerts)
            for fingerprint, state in news.alerts.items():
                old = merged.get(fingerprint)
                if old is None or (str(state.get("notified_at", ""))
                                   >= str(old.get("notified_at", ""))):
                    merged[fingerprint] = state
            row.alerts = merged
            row.status = "firing" if any(a.get("status") == "firing" for a in merged.values()) \
                else "resolved"
            row.updated_at = now
        session.flush()
        return {key: _group(row) for key, row in rows.items()}


def groups_with_runs(factory: sessionmaker[Session], keys: Collection[str],
                     ) -> dict[str, tuple[AlertGroupRecord, list[AlertRunRecord]]]:
    """The groups of `keys` that exist, each with its runs (oldest first), read at one
    moment."""
    wanted = sorted(set(keys))
    found: dict[str, tuple[AlertGroupRecord, list[AlertRunRecord]]] = {}
    with read_session(factory, snapshot=True) as session:
        for part in _parts(wanted):
            for row in session.scalars(select(AlertGroupRow)
                                       .where(AlertGroupRow.group_hash.in_(part))):
                found[row.group_hash] = (_group(row), [])
            for run in session.scalars(select(AlertRunRow)
                                       .where(AlertRunRow.group_hash.in_(part))
                                       .order_by(AlertRunRow.at, AlertRunRow.id)):
                if run.group_hash in found:
                    found[run.group_hash][1].append(_run(run))
    return found


def recent_groups(factory: sessionmaker[Session], since: datetime,
                  limit: int) -> list[AlertGroupRecord]:
    """Groups notified since ``since`` that have a message, newest first (to re-show them)."""
    query = (
        select(AlertGroupRow)
        .where(AlertGroupRow.updated_at >= since, AlertGroupRow.message_ts.is_not(None))
        .order_by(AlertGroupRow.updated_at.desc())
        .limit(limit)
    )
    with read_session(factory) as session:
        return [_group(row) for row in session.scalars(query)]


def set_group_message(factory: sessionmaker[Session], key: str, channel: str, ts: str) -> None:
    with write_session(factory) as session:
        row = session.get(AlertGroupRow, key)
        if row is not None:
            row.channel, row.message_ts = channel, ts


def _group(row: AlertGroupRow) -> AlertGroupRecord:
    return AlertGroupRecord(row.group_hash, row.group_key, row.status, dict(row.alerts),
                            row.channel, row.message_ts)


# -- decisions and runs -----------------------------------------------------------------------


@dataclass(frozen=True)
class DecisionAsked:
    """A decision to take on running `runbook` for an alert state (see `decide`), and the
    audit entry that records it (`audit`, given the decision), written with it."""

    state_key: str
    group_key: str
    fingerprint: str
    alertname: str
    runbook: str
    environment: str | None
    target: str | None
    mutating: bool
    guardrails: Guardrails | None
    problem: str | None = None
    audit: Callable[[AlertRunRecord], AuditEntry] | None = None


def decide(factory: sessionmaker[Session], now: datetime, asked: Sequence[DecisionAsked],
           owner: str | None = None) -> list[AlertRunRecord]:
    """The decision on each of `asked`, in order, each taken once (a decision taken before is
    returned as it was, `created` False), with its audit entry, in one transaction.

    Checks, in order: automation paused (everywhere or in the environment), the target's
    circuit breaker (mutating runbooks only), cooldown and runs per window (per runbook and
    target, counting shadow runs), then the global limit on concurrent automatic runs; each
    decision counts the ones taken before it. Without `guardrails` (a route that cannot
    run), `problem` is recorded as `no_target`.
    """
    decided: list[AlertRunRecord] = []
    if not asked:
        return decided
    with write_session(factory) as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(select(func.pg_advisory_xact_lock(_DECIDE_LOCK_KEY)))
        for one in asked:
            run = _decide_one(session, now, one, owner)
            if run.created and one.audit is not None:
                append_in(session, one.audit(run), now)
            decided.append(run)
    return decided


def _decide_one(session: Session, now: datetime, asked: DecisionAsked,
                owner: str | None) -> AlertRunRecord:
    found = session.scalar(select(AlertRunRow).where(
        AlertRunRow.state_key == _key(asked.state_key), AlertRunRow.runbook == asked.runbook))
    if found is not None:
        return _run(found)
    if asked.guardrails is None:
        decision, detail = "no_target", asked.problem or "no target"
    else:
        decision, detail = _check(session, now, asked.runbook, asked.environment, asked.target,
                                  asked.mutating, asked.guardrails)
    row = AlertRunRow(
        id=new_id("ar"), at=now, state_key=_key(asked.state_key),
        group_hash=group_hash(asked.group_key), fingerprint=asked.fingerprint,
        alertname=asked.alertname[:200], runbook=asked.runbook, environment=asked.environment,
        target=asked.target, mutating=asked.mutating, decision=decision, detail=detail[:1000],
        status="pending" if decision in RAN else "skipped", execution_id=None,
        request_id=None, finished_at=None if decision in RAN else now, owner=owner,
    )
    session.add(row)
    session.flush()
    return _run(row, created=True)


def _check(session: Session, now: datetime, runbook: str, environment: str | None,
           target: str | None, mutating: bool, limits: Guardrails) -> tuple[str, str]:
    pause = _active_pause(session, now, environment)
    if pause is not None:
        until = f" until {pause.until:%Y-%m-%d %H:%M} UTC" if pause.until else ""
        where = "everywhere" if pause.scope == "*" else f"in {pause.scope}"
        return "paused", f"automation is paused {where}{until} (by {pause.actor})"
    if mutating and environment and target:
        breaker = session.get(AutomationBreakerRow, (environment, target))
        if breaker is not None and breaker.opened_at is not None:
            return "breaker_open", (
                f"{breaker.failures} automatic remediations of {target} in {environment} "
                "failed in a row; automation stays off for it until someone runs "
                f"{code(f'automation resume --env {environment}')}")
    same = (AlertRunRow.runbook == runbook, AlertRunRow.environment == environment,
            AlertRunRow.target == target, AlertRunRow.decision.in_(RAN))
    last = session.scalar(select(func.max(AlertRunRow.at)).where(*same))
    if last is not None and now - last < limits.cooldown:
        return "cooldown", (f"ran {rough_span(now - last)} ago; "
                            f"cooldown {rough_span(limits.cooldown)}")
    runs = session.scalar(select(func.count()).select_from(AlertRunRow).where(
        *same, AlertRunRow.at > now - limits.window)) or 0
    if runs >= limits.max_runs:
        return "rate_limited", (f"{runs} runs in the last {rough_span(limits.window)} "
                                f"(limit {limits.max_runs})")
    active = session.scalar(select(func.count()).select_from(AlertRunRow).where(
        AlertRunRow.status.in_(ACTIVE_RUN_STATUSES))) or 0
    if active >= limits.max_concurrent:
        return "concurrency", (f"{active} automatic runs in progress "
                               f"(limit {limits.max_concurrent})")
    if limits.shadow:
        return "shadow", "shadow mode: a dry run that changes nothing"
    return "run", "within every guardrail"


def _active_pause(session: Session, now: datetime, environment: str | None) -> Pause | None:
    scopes = ["*", environment] if environment else ["*"]
    for row in session.scalars(select(AutomationPauseRow)
                               .where(AutomationPauseRow.scope.in_(scopes))):
        if row.until is None or row.until > now:
            return Pause(row.scope, row.until, row.actor, row.reason)
    return None


def start_run(factory: sessionmaker[Session], run_id: str, execution_id: str) -> None:
    with write_session(factory) as session:
        row = session.get(AlertRunRow, run_id)
        if row is not None and row.status == "pending":
            row.status, row.execution_id = "running", execution_id


def await_approval(factory: sessionmaker[Session], now: datetime, run_id: str,
                   request_id: str | None, status: str) -> None:
    """The run became an approval request, was refused before it started, or its request
    was cancelled."""
    with write_session(factory) as session:
        row = session.get(AlertRunRow, run_id)
        if row is not None and row.status in (*ACTIVE_RUN_STATUSES, "awaiting_approval"):
            row.status, row.request_id, row.finished_at = status, request_id, now


def finish_run(factory: sessionmaker[Session], now: datetime, run_id: str, outcome: str,
               breaker_limit: int) -> Breaker | None:
    """End the run; for a real (not shadow) mutating run that was not refused, count it in
    the target's breaker.

    Returns the breaker when this run opened it, so the caller tells humans once.
    """
    with write_session(factory) as session:
        row = session.get(AlertRunRow, run_id)
        if row is None or row.status not in ACTIVE_RUN_STATUSES:
            return None
        row.status, row.finished_at = outcome, now
        if not (row.mutating and row.decision == "run" and row.environment and row.target):
            return None
        if outcome == "refused":  # nothing was changed: neither a failure nor a success
            return None
        breaker = session.get(AutomationBreakerRow, (row.environment, row.target))
        if breaker is None:
            breaker = AutomationBreakerRow(environment=row.environment, target=row.target,
                                           failures=0, opened_at=None, updated_at=now)
            session.add(breaker)
        breaker.updated_at = now
        if outcome == "succeeded":
            breaker.failures, breaker.opened_at = 0, None
            return None
        breaker.failures += 1
        if breaker.opened_at is None and breaker.failures >= breaker_limit:
            breaker.opened_at = now
            return Breaker(breaker.environment, breaker.target, breaker.failures, now)
        return None


def interrupt_active(factory: sessionmaker[Session], now: datetime, *, me: str | None = None,
                     me_since: datetime | None = None,
                     alive: Collection[str] | None = None) -> list[AlertRunRecord]:
    """Runs decided or running by a replica that is gone end `interrupted`, never re-run:
    no owner recorded, an owner not in `alive`, or `me` for runs decided before `me_since`
    (this process's start). With `alive` None, every active run (one process alone)."""
    live = None if alive is None else set(alive)

    def orphaned(row: AlertRunRow) -> bool:
        if live is None:
            return True
        if row.owner == me:
            return me_since is not None and row.at < me_since
        return row.owner is None or row.owner not in live

    with write_session(factory) as session:
        rows = [row for row in session.scalars(
            select(AlertRunRow).where(AlertRunRow.status.in_(ACTIVE_RUN_STATUSES))
            .with_for_update()).all() if orphaned(row)]
        for row in rows:
            row.status, row.finished_at = "interrupted", now
        return [_run(row) for row in rows]


def runs_for_group(factory: sessionmaker[Session], key: str) -> list[AlertRunRecord]:
    with read_session(factory) as session:
        rows = session.scalars(select(AlertRunRow).where(AlertRunRow.group_hash == key)
                               .order_by(AlertRunRow.at, AlertRunRow.id)).all()
        return [_run(row) for row in rows]


def _run(row: AlertRunRow, *, created: bool = False) -> AlertRunRecord:
    return AlertRunRecord(
        row.id, row.at, row.group_hash, row.fingerprint, row.alertname, row.runbook,
        row.environment, row.target, row.mutating, row.decision, row.detail, row.status,
        row.execution_id, row.request_id, row.finished_at, created,
    )


# -- pause, resume, breakers ------------------------------------------------------------------


def pause(factory: sessionmaker[Session], now: datetime, *, scope: str, until: datetime | None,
          actor: str, reason: str | None) -> None:
    with write_session(factory) as session:
        row = session.get(AutomationPauseRow, scope)
        if row is None:
            session.add(AutomationPauseRow(scope=scope, until=until, actor=actor, reason=reason,
                                           at=now))
        else:
            row.until, row.actor, row.reason, row.at = until, actor, reason, now


def resume(factory: sessionmaker[Session], *, scope: str) -> tuple[list[str], list[Breaker]]:
    """Lift the pause of `scope` ("*": every pause) and close its open breakers.

    Returns the scopes un-paused and the breakers closed.
    """
    with write_session(factory) as session:
        pauses = select(AutomationPauseRow)
        breakers = select(AutomationBreakerRow).where(AutomationBreakerRow.opened_at.is_not(None))
        if scope != "*":
            pauses = pauses.where(AutomationPauseRow.scope == scope)
            breakers = breakers.where(AutomationBreakerRow.environment == scope)
        lifted = [row.scope for row in session.scalars(pauses).all()]
        closed = []
        for row in session.scalars(breakers).all():
            closed.append(Breaker(row.environment, row.target, row.failures, row.opened_at))
            row.failures, row.opened_at = 0, None
        session.execute(delete(AutomationPauseRow).where(AutomationPauseRow.scope.in_(lifted)))
        return lifted, closed


def status(factory: sessionmaker[Session], now: datetime) -> AutomationStatus:
    with read_session(factory) as session:
        pauses = [Pause(r.scope, r.until, r.actor, r.reason)
                  for r in session.scalars(select(AutomationPauseRow)
                                           .order_by(AutomationPauseRow.scope)).all()
                  if r.until is None or r.until > now]
        breakers = [Breaker(r.environment, r.target, r.failures, r.opened_at)
                    for r in session.scalars(select(AutomationBreakerRow)
                                             .where(AutomationBreakerRow.opened_at.is_not(None))
                                             .order_by(AutomationBreakerRow.environment,
                                                       AutomationBreakerRow.target)).all()]
        recent = [_run(r) for r in session.scalars(
            select(AlertRunRow).order_by(AlertRunRow.at.desc(), AlertRunRow.id.desc()).limit(10)
        ).all()]
        return AutomationStatus(pauses, breakers, recent)
