"""The ``Store`` facade: the one object the rest of the bot talks to for persistence.

Synchronous on purpose (the async dispatcher calls it via ``asyncio.to_thread``);
every method is one short transaction on its own connection, so one ``Store``
is safe to share between threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import Future
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from bot.store import alerts as _alerts
from bot.store import approvals as _approvals
from bot.store import audit as _audit
from bot.store import deliveries as _deliveries
from bot.store import executions as _executions
from bot.store import locks as _locks
from bot.store import migrate as _migrate
from bot.store import outbox as _outbox
from bot.store import replicas as _replicas
from bot.store import silences as _silences
from bot.store.alerts import (
    AlertGroupRecord,
    AlertRunRecord,
    AutomationStatus,
    Breaker,
    DecisionAsked,
    GroupUpdate,
    StoredNotification,
)
from bot.store.approvals import ReminderVerdict, RunOfRequest, Unfinished
from bot.store.audit import AuditEntry, AuditProblem
from bot.store.batch import GroupCommit, PlainInsert, RawWrite
from bot.store.db import DEFAULT_TIMEOUT_S, call_deadline, make_engine, unreachable
from bot.store.deliveries import Queued
from bot.store.errors import BadDatabaseURL, StoreUnavailable, translated
from bot.store.models import utcnow
from bot.store.outbox import Claimed, MessageAddress, OutboxStats, Outgoing
from bot.store.records import (
    ApprovalOutcome,
    ApprovalRequest,
    ExecutionRecord,
    LockInfo,
    SilenceRecord,
)

__all__ = ["Store"]

# How often one Store prunes old delivery claims (besides once at open).
_PRUNE_EVERY_S = 600.0


class Store:
    """Executions, locks, approval requests, delivery dedup, the outbox and the audit log.

    In SQLite or PostgreSQL.
    """

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utcnow,
                 timeout_s: float = DEFAULT_TIMEOUT_S, replica: str | None = None) -> None:
        """Wrap an engine whose schema is already current; most callers want ``open``.
        ``replica`` names this process among those sharing the database (recorded as the
        owner of the executions and alert runs it starts)."""
        self._engine = engine
        self.replica = replica or _replicas.this_replica()
        # How long to wait for one call before answering that the store is unavailable (the
        # engine bounds each wait on the database by ``timeout_s``).
        self.deadline = call_deadline(timeout_s)
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._clock = clock
        self._prune_lock = threading.Lock()
        self._next_prune = 0.0
        self._outbox_listeners: list[Callable[[], None]] = []
        # Records an answer waits for (acks, Alertmanager's 2xx), committed in groups. On a
        # database server, on connections of their own not pinged at each checkout (a round
        # trip a group): a group that meets a dead connection is tried again at once on a new
        # one (GroupCommit._transaction_anew).
        self._group_engine = engine if engine.dialect.name == "sqlite" else make_engine(
            engine.url, timeout_s=timeout_s, pre_ping=False)
        self._group = GroupCommit(self._group_engine, timeout_s=timeout_s)
        # When this process first said it is alive: runs owned by our name from before then
        # are a previous process's (same POD_NAME). None until the first heartbeat.
        self.started: datetime | None = None

    @classmethod
    def open(
        cls,
        url: str,
        *,
        migrate: bool = True,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        busy_timeout_ms: int | None = None,
        clock: Callable[[], datetime] = utcnow,
        replica: str | None = None,
    ) -> Store:
        """Connect to ``url``, run ``alembic upgrade head`` (unless ``migrate=False``). Every
        wait on the database is bounded by ``timeout_s`` (SQLite's lock wait by
        ``busy_timeout_ms`` if given)."""
        try:
            engine = make_engine(url, timeout_s=timeout_s, busy_timeout_ms=busy_timeout_ms)
        except ArgumentError as exc:
            raise BadDatabaseURL(f"the database URL is not valid: {exc}") from None
        except ImportError as exc:
            raise BadDatabaseURL(
                f"the database URL names a driver that is not installed ({exc.name}); for "
                "PostgreSQL install opsbot's `postgres` extra (psycopg)") from None
        except OSError as exc:  # SQLite: the file's directory cannot be made
            raise unreachable(url, exc) from exc
        try:
            with translated():
                if migrate:
                    _migrate.upgrade(engine)
        except StoreUnavailable as exc:  # the first connection: reached, and let in?
            engine.dispose()
            raise unreachable(url, exc.__cause__ or exc) from exc
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, clock=clock, timeout_s=timeout_s, replica=replica)

    @property
    def engine(self) -> Engine:
        """For components sharing the database (e.g. APScheduler's job store)."""
        return self._engine

    def close(self) -> None:
        self._group.close()
        if self._group_engine is not self._engine:
            self._group_engine.dispose()
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _now(self) -> datetime:
        return self._clock()

    @property
    def sessions(self) -> sessionmaker[Session]:
        """Session factory for other ``bot.store`` modules; not for use outside the package."""
        return self._sessions

    # executions -----------------------------------------------------------------

    def create_execution(
        self,
        *,
        runbook: str,
        source: str,
        actor: str,
        command: str,
        environment: str | None,
        target: str | None,
        params: dict[str, Any],
        dry_run: bool,
        request_id: str | None = None,
        channel: str | None = None,
    ) -> str:
        """Record a new ``running`` execution and return its id (``ex-...``)."""
        with translated():
            return _executions.create(
                self._sessions,
                self._now(),
                runbook=runbook,
                source=source,
                actor=actor,
                command=command,
                environment=environment,
                target=target,
                params=params,
                dry_run=dry_run,
                request_id=request_id,
                channel=channel,
                owner=self.replica,
            )

    def set_execution_message(self, ex_id: str, *, channel: str, ts: str) -> None:
        """Remember the Slack message reporting ``ex_id``, to update it later."""
        with translated():
            _executions.set_message(self._sessions, ex_id, channel=channel, ts=ts)

    def start_step(self, ex_id: str, *, index: int, name: str, handler: str) -> None:
        with translated():
            _executions.start_step(
                self._sessions, self._now(), ex_id, index=index, name=name, handler=handler
            )

    def finish_step(
        self,
        ex_id: str,
        *,
        index: int,
        status: str,
        summary: str,
        output: str | None = None,
        error: str | None = None,
    ) -> None:
        with translated():
            _executions.finish_step(
                self._sessions,
                self._now(),
                ex_id,
                index=index,
                status=status,
                summary=summary,
                output=output,
                error=error,
            )

    def finish_execution(self, ex_id: str, *, status: str, summary: str) -> None:
        """End ``ex_id`` with succeeded, failed, refused or interrupted; only once."""
        with translated():
            _executions.finish(self._sessions, self._now(), ex_id, status=status, summary=summary)

    def get_execution(self, ex_id: str) -> ExecutionRecord | None:
        with translated():
            return _executions.get(self._sessions, ex_id)

    def recent_executions(
        self, limit: int = 20, *, environment: str | None = None, target: str | None = None,
        running: bool = False,
    ) -> list[ExecutionRecord]:
        """Newest first, optionally only those of one environment and/or target, or only the
        running ones."""
        with translated():
            return _executions.recent(self._sessions, limit, environment=environment,
                                      target=target, running=running)

    def request_cancel(self, ex_id: str, user: str) -> tuple[ExecutionRecord, bool]:
        """Ask a running execution to stop between steps (``NotFound`` for an unknown id);
        the record and whether this call was the one that asked."""
        with translated():
            return _executions.request_cancel(self._sessions, self._now(), ex_id, user)

    def cancel_requested(self, ex_id: str) -> str | None:
        """Who asked ``ex_id`` to cancel, or None: read by the runner between steps."""
        with translated():
            return _executions.cancel_requested(self._sessions, ex_id)

    def interrupt_running(self, reason: str) -> list[ExecutionRecord]:
        """Mark every ``running`` execution ``interrupted`` (at startup) and return them.

        The target locks they held are released in the same transaction.
        """
        with translated():
            return _executions.interrupt_running(self._sessions, self._now(), reason)

    def interrupt_orphaned(self, reason: str, *, stale_after: timedelta) -> list[ExecutionRecord]:
        """Mark ``interrupted`` the running executions whose owner is gone (heartbeat older
        than ``stale_after`` or none, or this replica's name on runs from before this Store
        was made) and return them; their target locks are released in the same transaction.
        Another live replica's runs are left alone."""
        now = self._now()
        with translated():
            return _executions.interrupt_orphaned(
                self._sessions, now, reason, me=self.replica, me_since=self.started or now,
                stale_before=now - stale_after)

    # replicas -------------------------------------------------------------------

    def beat(self) -> None:
        """This replica is alive now (its heartbeat row, made on the first beat)."""
        now = self._now()
        if self.started is None:  # from the first attempt, even if the database is down
            self.started = now
        with translated():
            _replicas.beat(self._sessions, now, self.replica)

    def forget_replica(self) -> None:
        """This replica stops: its heartbeat row goes."""
        with translated():
            _replicas.forget(self._sessions, self.replica)

    def live_replicas(self, stale_after: timedelta) -> set[str]:
        with translated():
            return _replicas.live(self._sessions, self._now() - stale_after)

    # target locks ---------------------------------------------------------------

    def acquire_lock(
        self, target: str, *, execution_id: str, actor: str, ttl_seconds: float,
        request_id: str | None = None,
    ) -> LockInfo:
        """The lock in force on ``target`` afterwards; compare its ``execution_id`` with ours.

        Ours if the target was free or its lease had expired (taken over atomically,
        exactly one of several racing acquirers wins), or reserved for ``request_id`` (the
        approved request this execution runs); otherwise the holder's. Asking again while
        holding it extends the lease.
        """
        with translated():
            return _locks.acquire(
                self._sessions,
                self._now(),
                target,
                execution_id=execution_id,
                actor=actor,
                ttl_seconds=ttl_seconds,
                request_id=request_id,
            )

    def renew_lock(self, target: str, *, execution_id: str, ttl_seconds: float) -> bool:
        """Extend our lease to ``ttl_seconds`` from now; False if we no longer hold it."""
        with translated():
            return _locks.renew(
                self._sessions,
                self._now(),
                target,
                execution_id=execution_id,
                ttl_seconds=ttl_seconds,
            )

    def release_lock(self, target: str, *, execution_id: str) -> bool:
        """Free ``target`` if ``execution_id`` holds it; False (and no change) otherwise."""
        with translated():
            return _locks.release(self._sessions, self._now(), target, execution_id=execution_id)

    def force_unlock(self, target: str) -> LockInfo | None:
        """Admin override: free ``target`` whoever holds it; returns that lease, or None."""
        with translated():
            return _locks.force_unlock(self._sessions, self._now(), target)

    def get_lock(self, target: str) -> LockInfo | None:
        """The lease or reservation in force on ``target``; None when free or expired."""
        with translated():
            return _locks.get(self._sessions, self._now(), target)

    def held_locks(self) -> list[LockInfo]:
        """Every lease and reservation in force, by target, each with its command."""
        with translated():
            return _locks.held(self._sessions, self._now())

    # silences opsbot made ----------------------------------------------------------

    def silence_made(self, silence_id: str, *, matchers: dict[str, str], created_by: str,
                     ends_at: datetime, execution_id: str | None) -> None:
        with translated():
            _silences.made(self._sessions, self._now(), silence_id, matchers=matchers,
                           created_by=created_by, ends_at=ends_at, execution_id=execution_id)

    def silence_expired(self, silence_id: str, by: str) -> SilenceRecord | None:
        with translated():
            return _silences.expired(self._sessions, self._now(), silence_id, by)

    def recent_silences(self, keep: timedelta = timedelta(hours=24)) -> list[SilenceRecord]:
        """Silences opsbot made that are in force or ended within ``keep``, newest first."""
        with translated():
            return _silences.recent(self._sessions, self._now(), keep=keep)

    # approval requests ----------------------------------------------------------

    def create_request(
        self,
        *,
        runbook: str,
        command: str,
        environment: str,
        target: str | None,
        params: dict[str, Any],
        reason: str | None,
        requester: str,
        source: str,
        channel: str | None,
        plan_text: str,
        plan_digest: str,
        required: int,
        eligible_users: Sequence[str],
        eligible_groups: Sequence[str],
        allow_self: bool,
        ttl_seconds: float,
        emergency: bool = False,
        context: dict[str, Any] | None = None,
        reserve: str | None = None,
        checklist: Sequence[str] = (),
    ) -> ApprovalRequest:
        """Record a ``pending`` request (``rq-...``) that expires ``ttl_seconds`` from now;
        ``context`` holds the run's extra template values (JSON). With ``reserve`` (a lock
        key) the target is reserved for it until then, atomically: if it is held, nothing is
        recorded and ``TargetHeld`` names the holder."""
        with translated():
            return _approvals.create(
                self._sessions,
                self._now(),
                runbook=runbook,
                command=command,
                environment=environment,
                target=target,
                params=params,
                reason=reason,
                requester=requester,
                source=source,
                channel=channel,
                plan_text=plan_text,
                plan_digest=plan_digest,
                required=required,
                eligible_users=eligible_users,
                eligible_groups=eligible_groups,
                allow_self=allow_self,
                ttl_seconds=ttl_seconds,
                emergency=emergency,
                context=context,
                reserve=reserve,
                checklist=checklist,
            )

    def get_request(self, request_id: str) -> ApprovalRequest | None:
        """The request with exactly this id, or None."""
        with translated():
            return _approvals.get(self._sessions, request_id)

    def pending_requests(self, *, environment: str | None = None) -> list[ApprovalRequest]:
        """Pending requests, oldest first.

        Includes any already past ``expires_at`` that ``expire_due`` has not swept yet.
        """
        with translated():
            return _approvals.pending(self._sessions, environment=environment)

    def set_request_message(self, request_id: str, *, channel: str, ts: str) -> None:
        """Remember the Slack message that shows the request, to update it later."""
        with translated():
            _approvals.set_message(self._sessions, request_id, channel=channel, ts=ts)

    def approve(self, request_id: str, user: str) -> ApprovalOutcome:
        """Record ``user``'s approval; the one reaching ``required`` gets ``complete``.

        Atomic across threads, processes and replicas: of racing approvers exactly one
        ever gets ``complete``. Eligibility and self-approval are the caller's to check
        first. ``expired`` records nothing and leaves the status to ``expire``.
        """
        with translated():
            return _approvals.approve(self._sessions, self._now(), request_id, user)

    def deny(self, request_id: str, user: str, reason: str) -> ApprovalOutcome:
        """Pending -> denied (``denied``), or ``not_pending`` / ``expired`` and no change."""
        with translated():
            return _approvals.deny(self._sessions, self._now(), request_id, user, reason)

    def cancel(self, request_id: str, user: str, note: str | None = None) -> ApprovalOutcome:
        """Pending -> cancelled (``cancelled``), or ``not_pending`` and no change."""
        with translated():
            return _approvals.cancel(self._sessions, self._now(), request_id, user, note)

    def expire(self, request_id: str) -> ApprovalRequest | None:
        """Pending and past ``expires_at`` -> expired, returned; None otherwise."""
        with translated():
            return _approvals.expire(self._sessions, self._now(), request_id)

    def expire_due(self) -> list[ApprovalRequest]:
        """Expire every pending request past ``expires_at``; each is returned to one caller."""
        with translated():
            return _approvals.expire_due(self._sessions, self._now())

    def void(self, request_id: str, note: str,
             execution_id: str | None = None) -> ApprovalRequest | None:
        """Approved -> void (the plan changed, or the approved run never started; the run
        refused, if any, is ``execution_id``), returned; None if it was not approved."""
        with translated():
            return _approvals.void(self._sessions, request_id, note, execution_id=execution_id)

    def mark_executed(self, request_id: str, execution_id: str,
                      note: str | None = None) -> ApprovalRequest | None:
        """Approved -> executed with ``execution_id`` (and what to say about that run),
        returned; None if it was not approved."""
        with translated():
            return _approvals.mark_executed(self._sessions, request_id, execution_id,
                                            note=note)

    def unfinished_requests(self, grace: timedelta,
                            request_id: str | None = None) -> list[Unfinished]:
        """Requests left ``approved`` with no run recorded on them (all, or ``request_id``);
        overdue once ``grace`` has passed since their approval."""
        with translated():
            return _approvals.unfinished(self._sessions, self._now(), grace, request_id)

    def latest_request_run(self, request_id: str) -> RunOfRequest | None:
        """The newest execution started for the request, if any."""
        with translated():
            return _approvals.run_of(self._sessions, request_id)

    def claim_reminder(self, request_id: str,
                       every_seconds: float) -> tuple[ReminderVerdict, ApprovalRequest | None]:
        """Whether this caller posts the break-glass reminder due now (``remind``); or
        ``duplicate`` (another replica claimed this interval's), ``expired`` (past its week:
        reminders stop) or ``stop`` (acknowledged, or not break-glass)."""
        with translated():
            verdict, request, key = _approvals.reminder_due(self._sessions, self._now(),
                                                            request_id, every_seconds)
        if verdict == "remind" and not self.claim_delivery(key):
            return "duplicate", request
        return verdict, request

    # alerts and automation -----------------------------------------------------

    def recent_alert_groups(self, keep: timedelta = timedelta(days=7),
                            limit: int = 200) -> list[AlertGroupRecord]:
        """Alert groups with a message, notified within ``keep``, newest first."""
        with translated():
            return _alerts.recent_groups(self._sessions, self._now() - keep, limit)

    def record_notification(self, *, group_key: str, receiver: str, status: str,
                            payload: dict[str, Any]) -> str:
        """Commit an Alertmanager notification as received; returns its id (``an-...``)."""
        with translated():
            return _alerts.record_notification(self._sessions, self._now(), group_key=group_key,
                                               receiver=receiver, status=status, payload=payload)

    def queue_notification(self, *, group_key: str, receiver: str, status: str,
                           payload: dict[str, Any], payload_json: str | None = None,
                           ) -> Future[str]:
        """`record_notification` in the next group commit: the future holds the id once the
        notification is committed (or a store error). `payload_json` is `payload` as the JSON
        text it was read from, which SQLite then stores as it is."""
        return self._group.submit(*self._notification_write(
            group_key=group_key, receiver=receiver, status=status, payload=payload,
            payload_json=payload_json))

    async def commit_notification(self, *, group_key: str, receiver: str, status: str,
                                  payload: dict[str, Any], payload_json: str | None = None,
                                  timeout: float) -> str:
        """`queue_notification`, waited for (`GroupCommit.commit`): the id once the
        notification is committed; a store error, or TimeoutError after `timeout`."""
        apply, raw, row = self._notification_write(
            group_key=group_key, receiver=receiver, status=status, payload=payload,
            payload_json=payload_json)
        return await self._group.commit(apply, timeout, raw=raw, row=row)

    def _notification_write(self, *, group_key: str, receiver: str, status: str,
                            payload: dict[str, Any], payload_json: str | None,
                            ) -> tuple[Callable[[Connection], str], RawWrite[str],
                                       PlainInsert[str]]:
        row = _alerts.notification_row(self._now(), group_key=group_key, receiver=receiver,
                                       status=status, payload=payload)
        return (lambda connection: _alerts.insert_notification(connection, row),
                lambda raw: _alerts.insert_notification_raw(raw, row, payload_json),
                _alerts.notification_insert(row, payload_json, self._engine.dialect.name))

    def unprocessed_notifications(self, limit: int = 100) -> list[StoredNotification]:
        with translated():
            return _alerts.unprocessed(self._sessions, limit)

    def claim_notifications(self, limit: int = 50, *,
                            lease: timedelta = timedelta(minutes=2)) -> list[StoredNotification]:
        """Unprocessed notifications no other replica holds, claimed by this one for
        ``lease`` (oldest first)."""
        with translated():
            return _alerts.claim_unprocessed(self._sessions, self._now(), self.replica, limit,
                                             lease)

    def get_notification(self, notification_id: str) -> StoredNotification | None:
        with translated():
            return _alerts.get_notification(self._sessions, notification_id)

    def mark_notification_processed(self, notification_id: str) -> None:
        self.mark_notifications_processed([notification_id])

    def mark_notifications_processed(self, notification_ids: Collection[str]) -> None:
        with translated():
            _alerts.mark_processed(self._sessions, self._now(), notification_ids)

    def claim_alert_states(self, keys: Collection[str], notification_id: str) -> set[str]:
        """The alert states of ``keys`` that ``notification_id`` owns (see
        bot/store/alerts.py), in one transaction."""
        return self.claim_alert_states_for([(notification_id, keys)])[notification_id]

    def claim_alert_states_for(self, claims: Sequence[tuple[str, Collection[str]]],
                               ) -> dict[str, set[str]]:
        """For each (notification id, alert state keys), in order, the states that
        notification owns; one transaction for all."""
        with translated():
            return _alerts.claim_states(self._sessions, self._now(), claims)

    def prune_alerts(self, keep: timedelta) -> None:
        with translated():
            _alerts.prune(self._sessions, self._now(), keep)

    def update_alert_group(self, *, group_key: str, receiver: str,
                           alerts: dict[str, Any]) -> AlertGroupRecord:
        news = GroupUpdate(group_key=group_key, receiver=receiver, alerts=alerts)
        return self.update_alert_groups([news])[_alerts.group_hash(group_key)]

    def update_alert_groups(self, updates: Sequence[GroupUpdate],
                            ) -> dict[str, AlertGroupRecord]:
        """Merge each update into its group, in order, in one transaction; the groups as
        they end, by group hash."""
        with translated():
            return _alerts.update_groups(self._sessions, self._now(), updates)

    def alert_groups_with_runs(self, group_hashes: Collection[str],
                               ) -> dict[str, tuple[AlertGroupRecord, list[AlertRunRecord]]]:
        """The groups that exist of ``group_hashes``, each with its runs, read at one
        moment."""
        with translated():
            return _alerts.groups_with_runs(self._sessions, group_hashes)

    def set_alert_group_message(self, group_hash: str, *, channel: str, ts: str) -> None:
        with translated():
            _alerts.set_group_message(self._sessions, group_hash, channel, ts)

    def decide_alert_run(self, **kwargs: Any) -> AlertRunRecord:
        """Take (or find) the guardrail decision on a runbook for an alert state."""
        return self.decide_alert_runs([DecisionAsked(**kwargs)])[0]

    def decide_alert_runs(self, asked: Sequence[DecisionAsked]) -> list[AlertRunRecord]:
        """Take (or find) each decision, in order, with its audit entry, in one
        transaction (see bot/store/alerts.py)."""
        with translated():
            return _alerts.decide(self._sessions, self._now(), asked, owner=self.replica)

    def start_alert_run(self, run_id: str, execution_id: str) -> None:
        with translated():
            _alerts.start_run(self._sessions, run_id, execution_id)

    def alert_run_not_started(self, run_id: str, *, request_id: str | None,
                              status: str) -> None:
        with translated():
            _alerts.await_approval(self._sessions, self._now(), run_id, request_id, status)

    def finish_alert_run(self, run_id: str, outcome: str, *, breaker_limit: int) -> Breaker | None:
        with translated():
            return _alerts.finish_run(self._sessions, self._now(), run_id, outcome,
                                      breaker_limit)

    def interrupt_alert_runs(self, *,
                             stale_after: timedelta | None = None) -> list[AlertRunRecord]:
        """Active alert runs whose owner is gone (see ``interrupt_orphaned``); every active
        run when ``stale_after`` is None."""
        with translated():
            alive = None if stale_after is None else _replicas.live(
                self._sessions, self._now() - stale_after)
            now = self._now()
            return _alerts.interrupt_active(self._sessions, now, me=self.replica,
                                            me_since=self.started or now, alive=alive)

    def alert_runs(self, group_hash: str) -> list[AlertRunRecord]:
        with translated():
            return _alerts.runs_for_group(self._sessions, group_hash)

    def pause_automation(self, *, scope: str, duration: timedelta | None, actor: str,
                         reason: str | None) -> datetime | None:
        """Pause automatic runs in ``scope`` for ``duration`` (None: until resumed)."""
        now = self._now()
        until = now + duration if duration is not None else None
        with translated():
            _alerts.pause(self._sessions, now, scope=scope, until=until, actor=actor,
                          reason=reason)
        return until

    def resume_automation(self, *, scope: str) -> tuple[list[str], list[Breaker]]:
        with translated():
            return _alerts.resume(self._sessions, scope=scope)

    def automation_status(self) -> AutomationStatus:
        with translated():
            return _alerts.status(self._sessions, self._now())

    # delivery dedup -------------------------------------------------------------

    def claim_delivery(self, key: str) -> bool:
        """True the first time ``key`` is seen (across replicas), False afterwards."""
        with translated():
            return _deliveries.claim(
                self._sessions, self._now(), key, prune_first=self._prune_due()
            )

    def accept_trigger(self, key: str, trigger: str) -> bool:
        """Claim ``key`` and queue ``trigger`` (JSON) in one transaction, acked by this
        replica: True the first time, False for a duplicate."""
        with translated():
            return _deliveries.accept(self._sessions, self._now(), key, trigger, self.replica,
                                      prune_first=self._prune_due())

    def queue_trigger(self, key: str, trigger: str) -> Future[bool]:
        """`accept_trigger` in the next group commit: the future holds True the first time,
        False for a duplicate, once the record is committed (or a store error)."""
        return self._group.submit(*self._trigger_write(key, trigger))

    async def commit_trigger(self, key: str, trigger: str, timeout: float) -> bool:
        """`queue_trigger`, waited for (`GroupCommit.commit`): True the first time, False for
        a duplicate, once the record is committed; a store error, or TimeoutError after
        `timeout`."""
        apply, raw = self._trigger_write(key, trigger)
        return await self._group.commit(apply, timeout, raw=raw)

    def _trigger_write(self, key: str, trigger: str,
                       ) -> tuple[Callable[[Connection], bool], RawWrite[bool] | None]:
        now, prune = self._now(), self._prune_due()
        return (lambda session: _deliveries.accept_in(session, now, key, trigger, self.replica,
                                                      prune_first=prune),
                # The prune (once in a while) takes Core's path.
                None if prune else lambda raw: _deliveries.accept_raw(raw, now, key, trigger,
                                                                      self.replica))

    def start_trigger(self, key: str) -> bool:
        """True for the one caller that marks the queued trigger of ``key`` started."""
        with translated():
            return _deliveries.start(self._sessions, self._now(), key)

    def unstarted_triggers(self, older_than: timedelta) -> list[Queued]:
        """Triggers acked more than ``older_than`` ago whose work never started."""
        with translated():
            return _deliveries.unstarted(self._sessions, self._now() - older_than)

    def _prune_due(self) -> bool:
        with self._prune_lock:
            now = time.monotonic()
            if now < self._next_prune:
                return False
            self._next_prune = now + _PRUNE_EVERY_S
            return True

    # outbox -----------------------------------------------------------------------

    def enqueue(self, outgoing: Outgoing, *, stream: str | None = None) -> int:
        """Commit one outbound chat effect at the end of ``stream`` (see ``bot.store.outbox``),
        then tell this process's senders; returns its row id."""
        return self.enqueue_all([(outgoing, stream)])[0]

    def enqueue_all(self, items: Sequence[tuple[Outgoing, str | None]]) -> list[int]:
        """`enqueue` each (outgoing, stream), in order, in one transaction."""
        if not items:
            return []
        with translated():
            row_ids = _outbox.enqueue(self._sessions, self._now(), items)
        for listener in list(self._outbox_listeners):
            listener()
        return row_ids

    def on_enqueue(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` (from any thread) after each enqueue; returns the unsubscriber."""
        self._outbox_listeners.append(listener)
        return lambda: self._outbox_listeners.remove(listener)

    def claim_outgoing(self, owner: str, *, limit: int, lease_seconds: float) -> list[Claimed]:
        """Claim up to ``limit`` due stream heads for ``owner``, leased for ``lease_seconds``."""
        with translated():
            return _outbox.claim(self._sessions, self._now(), owner, limit=limit,
                                 lease=timedelta(seconds=lease_seconds))

    def release_outgoing(self, gone: Callable[[str | None], bool]) -> int:
        """Rows being sent by a sender that is `gone` (given its name) wait again, due now;
        returns how many (see ``bot.store.outbox.release``)."""
        with translated():
            return _outbox.release(self._sessions, self._now(), gone)

    def finish_outgoing(self, row_id: int, owner: str, status: str, *, error: str | None = None,
                        message: MessageAddress | None = None) -> bool:
        """End a claimed row: delivered, failed or dropped; ``message`` records where the
        message it posted went (also on its execution, request or alert group), or why not."""
        with translated():
            return _outbox.finish(self._sessions, self._now(), row_id, owner, status,
                                  error=error, message=message)

    def retry_outgoing(self, row_id: int, owner: str, *, delay: float, error: str | None,
                       counted: bool = True) -> bool:
        with translated():
            return _outbox.retry(self._sessions, self._now(), row_id, owner, delay=delay,
                                 error=error, counted=counted)

    def substitute_outgoing(self, row_id: int, owner: str, *, error: str | None,
                            message: MessageAddress | None = None) -> bool:
        """Replace a claimed row by what it carries ``instead``; False when it carries none."""
        with translated():
            return _outbox.substitute(self._sessions, self._now(), row_id, owner, error=error,
                                      message=message)

    def message_address(self, key: str) -> MessageAddress | None:
        """Where the outbox posted message ``key``, or why it could not; None if it did not."""
        with translated():
            return _outbox.address(self._sessions, key)

    def message_stream(self, key: str) -> str | None:
        """The stream of message ``key``'s rows still kept in the outbox, if any."""
        with translated():
            return _outbox.stream_of(self._sessions, key)

    def outbox_stats(self) -> OutboxStats:
        with translated():
            return _outbox.stats(self._sessions, self._now())

    def prune_outbox(self) -> int:
        with translated():
            return _outbox.prune(self._sessions, self._now())

    # audit log ------------------------------------------------------------------

    def audit(self, entry: AuditEntry) -> int:
        """Append ``entry`` to the hash chain; returns its sequence number."""
        with translated():
            return _audit.append(self._sessions, entry, self._now())

    def verify_audit(self) -> list[AuditProblem]:
        """Every problem found in the chain; empty when intact."""
        with translated():
            return _audit.verify(self._sessions)

    def audit_records(
        self,
        *,
        environment: str | None = None,
        target: str | None = None,
        outcomes: Sequence[str] | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Audit records for history views, newest first, shaped as ``export_audit`` yields."""
        with translated():
            return _audit.query(
                self._sessions,
                environment=environment,
                target=target,
                outcomes=outcomes,
                limit=limit,
            )

    def export_audit(self, since: datetime | None = None) -> Iterator[dict[str, Any]]:
        """Audit records (``time`` >= ``since``) as dicts, oldest first."""
        with translated():
            yield from _audit.export(self._sessions, since)
