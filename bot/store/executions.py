"""Reads and writes of executions and their steps.

An execution is created ``running`` by its owner (the replica running it) and ends exactly
once (succeeded, failed, refused, interrupted or cancelled). Anyone may ask a running one to
cancel (a flag in its row); its owner reads the flag between steps. Nothing is re-run: what
an owner that is gone left running (its heartbeat stale, or a restarted process's own earlier
runs) is marked ``interrupted`` and handed back so the caller can report it; the target locks
those executions held are released in the same transaction. A live replica's runs are left alone.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload, sessionmaker

from bot.store import locks as _locks
from bot.store.db import read_session, write_session
from bot.store.errors import InvalidTransition, NotFound
from bot.store.ids import new_id
from bot.store.models import Execution, ExecutionStep, ReplicaRow
from bot.store.records import EXECUTION_FINAL_STATUSES, ExecutionRecord, StepRecord

__all__ = [
    "cancel_requested",
    "create",
    "finish",
    "finish_step",
    "get",
    "interrupt_orphaned",
    "interrupt_running",
    "recent",
    "request_cancel",
    "set_message",
    "start_step",
]

RUNNING = "running"
INTERRUPTED = "interrupted"


def create(
    factory: sessionmaker[Session],
    now: datetime,
    *,
    runbook: str,
    source: str,
    actor: str,
    command: str,
    environment: str | None,
    target: str | None,
    params: dict[str, Any],
    dry_run: bool,
    request_id: str | None,
    channel: str | None,
    owner: str | None = None,
) -> str:
    execution = Execution(
        id=new_id("ex"),
        runbook=runbook,
        source=source,
        actor=actor,
        command=command,
        environment=environment,
        target=target,
        params=dict(params),
        dry_run=dry_run,
        request_id=request_id,
        channel=channel,
        message_ts=None,
        status=RUNNING,
        summary=None,
        started_at=now,
        finished_at=None,
        owner=owner,
    )
    with write_session(factory) as session:
        session.add(execution)
    return execution.id


def _load(session: Session, ex_id: str, *, lock: bool = False) -> Execution:
    query = select(Execution).where(Execution.id == ex_id)
    if lock:
        query = query.with_for_update()
    execution = session.scalars(query).one_or_none()
    if execution is None:
        raise NotFound(f"no execution {ex_id!r}")
    return execution


def _load_running(session: Session, ex_id: str, action: str) -> Execution:
    execution = _load(session, ex_id, lock=True)
    if execution.status != RUNNING:
        raise InvalidTransition(f"cannot {action}: execution {ex_id} is already {execution.status}")
    return execution


def set_message(factory: sessionmaker[Session], ex_id: str, *, channel: str, ts: str) -> None:
    with write_session(factory) as session:
        execution = _load(session, ex_id)
        execution.channel, execution.message_ts = channel, ts


def start_step(
    factory: sessionmaker[Session],
    now: datetime,
    ex_id: str,
    *,
    index: int,
    name: str,
    handler: str,
) -> None:
    with write_session(factory) as session:
        _load_running(session, ex_id, f"start step {index}")
        if session.get(ExecutionStep, (ex_id, index)) is not None:
            raise InvalidTransition(f"step {index} of execution {ex_id} was already started")
        session.add(
            ExecutionStep(
                execution_id=ex_id,
                index=index,
                name=name,
                handler=handler,
                status=RUNNING,
                summary=None,
                output=None,
                error=None,
                started_at=now,
                finished_at=None,
            )
        )


def finish_step(
    factory: sessionmaker[Session],
    now: datetime,
    ex_id: str,
    *,
    index: int,
    status: str,
    summary: str,
    output: str | None,
    error: str | None,
) -> None:
    if status == RUNNING:
        raise ValueError("a finished step cannot have status 'running'")
    with write_session(factory) as session:
        _load_running(session, ex_id, f"finish step {index}")
        step = session.get(ExecutionStep, (ex_id, index))
        if step is None:
            raise NotFound(f"execution {ex_id} has no step {index}")
        if step.status != RUNNING:
            raise InvalidTransition(f"step {index} of execution {ex_id} is already {step.status}")
        step.status, step.summary, step.output, step.error = status, summary, output, error
        step.finished_at = now


def finish(
    factory: sessionmaker[Session], now: datetime, ex_id: str, *, status: str, summary: str
) -> None:
    if status not in EXECUTION_FINAL_STATUSES:
        raise ValueError(
            f"status must be one of {', '.join(sorted(EXECUTION_FINAL_STATUSES))}, not {status!r}"
        )
    with write_session(factory) as session:
        execution = _load_running(session, ex_id, f"finish as {status}")
        execution.status, execution.summary, execution.finished_at = status, summary, now
        if status == INTERRUPTED:  # cut short mid-step (shutdown): no step stays running
            for step in session.scalars(select(ExecutionStep).where(
                    ExecutionStep.execution_id == ex_id, ExecutionStep.status == RUNNING)):
                step.status, step.error, step.finished_at = INTERRUPTED, summary, now


def get(factory: sessionmaker[Session], ex_id: str) -> ExecutionRecord | None:
    with read_session(factory) as session:
        execution = session.scalars(
            select(Execution).where(Execution.id == ex_id).options(selectinload(Execution.steps))
        ).one_or_none()
        return None if execution is None else to_record(execution)


def request_cancel(factory: sessionmaker[Session], now: datetime, ex_id: str,
                   user: str) -> tuple[ExecutionRecord, bool]:
    """Ask the running execution ``ex_id`` to stop between steps; the record afterwards and
    whether this call asked (False: it is not running, or someone asked already)."""
    stmt = (
        update(Execution)
        .where(Execution.id == ex_id, Execution.status == RUNNING,
               Execution.cancel_requested_by.is_(None))
        .values(cancel_requested_by=user, cancel_requested_at=now)
        .returning(Execution.id)
        .execution_options(synchronize_session=False)
    )
    with write_session(factory) as session:
        asked = session.execute(stmt).first() is not None
        session.expire_all()
        execution = session.scalars(
            select(Execution).where(Execution.id == ex_id).options(selectinload(Execution.steps))
        ).one_or_none()
        if execution is None:
            raise NotFound(f"no execution {ex_id!r}")
        return to_record(execution), asked


def cancel_requested(factory: sessionmaker[Session], ex_id: str) -> str | None:
    """Who asked ``ex_id`` to cancel, if anyone: what the runner reads between steps."""
    with read_session(factory) as session:
        return session.scalar(select(Execution.cancel_requested_by).where(Execution.id == ex_id))


def recent(
    factory: sessionmaker[Session], limit: int, *, environment: str | None, target: str | None,
    running: bool = False,
) -> list[ExecutionRecord]:
    query = select(Execution).options(selectinload(Execution.steps))
    if running:
        query = query.where(Execution.status == RUNNING)
    if environment is not None:
        query = query.where(Execution.environment == environment)
    if target is not None:
        query = query.where(Execution.target == target)
    query = query.order_by(Execution.started_at.desc(), Execution.id.desc()).limit(limit)
    with read_session(factory) as session:
        return [to_record(execution) for execution in session.scalars(query)]


def interrupt_running(
    factory: sessionmaker[Session], now: datetime, reason: str
) -> list[ExecutionRecord]:
    """Every running execution, whoever runs it (one process alone on its database)."""
    return _interrupt(factory, now, reason, lambda _execution: True)


def interrupt_orphaned(
    factory: sessionmaker[Session], now: datetime, reason: str, *, me: str,
    me_since: datetime, stale_before: datetime,
) -> list[ExecutionRecord]:
    """Running executions whose owner is gone: no owner recorded, an owner whose heartbeat
    is older than `stale_before` (or absent), or `me` itself for runs started before
    `me_since` (this process's start): a restarted process that kept its name left those."""
    with read_session(factory) as session:
        alive = set(session.scalars(
            select(ReplicaRow.id).where(ReplicaRow.seen_at >= stale_before)))

    def orphaned(execution: Execution) -> bool:
        if execution.owner == me:
            return execution.started_at < me_since
        return execution.owner is None or execution.owner not in alive

    return _interrupt(factory, now, reason, orphaned)


def _interrupt(
    factory: sessionmaker[Session], now: datetime, reason: str,
    which: Callable[[Execution], bool],
) -> list[ExecutionRecord]:
    with write_session(factory) as session:
        candidates = session.scalars(
            select(Execution)
            .where(Execution.status == RUNNING)
            .order_by(Execution.started_at, Execution.id)
            .options(selectinload(Execution.steps))
            .with_for_update()
        ).all()
        running = [execution for execution in candidates if which(execution)]
        for execution in running:
            execution.status, execution.summary, execution.finished_at = INTERRUPTED, reason, now
            for step in execution.steps:
                if step.status == RUNNING:
                    step.status, step.error, step.finished_at = INTERRUPTED, reason, now
        _locks.release_for(session, [execution.id for execution in running])
        session.flush()
        return [to_record(execution) for execution in running]


def to_record(execution: Execution) -> ExecutionRecord:
    return ExecutionRecord(
        id=execution.id,
        runbook=execution.runbook,
        source=execution.source,
        actor=execution.actor,
        command=execution.command,
        environment=execution.environment,
        target=execution.target,
        params=dict(execution.params),
        dry_run=execution.dry_run,
        request_id=execution.request_id,
        channel=execution.channel,
        ts=execution.message_ts,
        status=execution.status,
        summary=execution.summary,
        started_at=execution.started_at,
        finished_at=execution.finished_at,
        owner=execution.owner,
        cancel_requested_by=execution.cancel_requested_by,
        cancel_requested_at=execution.cancel_requested_at,
        steps=[
            StepRecord(
                index=step.index,
                name=step.name,
                handler=step.handler,
                status=step.status,
                summary=step.summary,
                output=step.output,
                error=step.error,
                started_at=step.started_at,
                finished_at=step.finished_at,
            )
            for step in execution.steps
        ],
    )
