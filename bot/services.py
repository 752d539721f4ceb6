"""Wiring: one place builds the store, registry, runbook catalog, clients and dispatcher,
so `serve`, `shell`, `run` and `demo` run the same product."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from bot.access import Access, GroupMembers, StaticGroups
from bot.alerts.console import ConsoleAlertBoard
from bot.alerts.processor import AlertProcessor
from bot.alerts.view import AlertBoard
from bot.approvals.board import Board
from bot.approvals.service import Approvals
from bot.commands import Command, parse
from bot.config import Settings
from bot.console.board import ConsoleBoard
from bot.console.reporter import ConsoleReporter
from bot.dispatcher import Dispatcher, Outcome
from bot.errors import ConfigError, UsageError
from bot.invocation import Invocation
from bot.kube import KubeFactory
from bot.leader import Leadership, LeaseConfig, LeaseElector, SoleLeader, pod_namespace
from bot.pacing import Foreground
from bot.records import StoreRecords
from bot.registry import Registry
from bot.reporting import ExecutionView, Notice, Reporter
from bot.runbooks.loader import Catalog, load_catalog
from bot.runbooks.params import coerce_params
from bot.store import AuditEntry, Store
from bot.store.outbox import same_replica, sender_name
from bot.trigger import Trigger

if TYPE_CHECKING:
    from bot.scheduler import Scheduler

__all__ = ["SCHEDULE_ACTOR", "FailuresOnly", "Services", "default_database_url"]

#: Who scheduled runs are recorded as.
SCHEDULE_ACTOR = "opsbot"

log = logging.getLogger("opsbot")

_HEARTBEAT = "opsbot heartbeat"
#: How long stopping waits for a beat still running, then for the heartbeat row's removal.
FORGET_WAIT_S = 10.0
_WATCH = "opsbot orphan recovery"


def default_database_url() -> str:
    return f"sqlite:///{Path('opsbot.db').resolve()}"


@dataclass
class Services:
    settings: Settings
    store: Store
    registry: Registry
    catalog: Catalog
    kube: KubeFactory
    access: Access
    dispatcher: Dispatcher
    approvals: Approvals
    alerts: AlertProcessor
    # Where runs nobody typed report (the scheduled verification): a reporter for a channel.
    report_to: Callable[[str | None], Reporter] = field(
        default=lambda _channel: ConsoleReporter())
    scheduler: Scheduler | None = None
    leadership: Leadership | None = None  # `serve` only: who runs the scheduler and recovery
    # Told the executions the leader's recovery marked interrupted (the Slack front end
    # updates their messages).
    on_interrupted: Callable[[list[str]], Awaitable[None]] | None = None
    # Asked, with the leader's recovery, to resume or report triggers acked and never started
    # (the Slack front end queues them); the argument is how old they must be (None: all).
    on_unstarted: Callable[[timedelta | None], Awaitable[None]] | None = None
    # This process's outbox sender's name (bot/store/outbox.py `sender_name`): recovery
    # releases the rows of every other sender that is gone.
    outbox_owner: str = ""
    # Requests waiting for their answer; background work waits for them (bot/pacing.py).
    foreground: Foreground = field(default_factory=Foreground)
    _background: list[asyncio.Task[None]] = field(default_factory=list)
    _beats: ThreadPoolExecutor | None = None  # the heartbeat's thread, while it beats

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        members: GroupMembers | None = None,
        registry: Registry | None = None,
        store: Store | None = None,
        board: Board | None = None,
        alert_board: AlertBoard | None = None,
        report_to: Callable[[str | None], Reporter] | None = None,
    ) -> Services:
        """Load runbooks first (an invalid one stops startup), then open the store."""
        registry = registry or Registry.installed()
        catalog = load_catalog([settings.resolve_path(d) for d in settings.runbook_dirs], registry)
        _check_silence_buttons(settings, catalog)
        store = store or Store.open(settings.database_url or default_database_url())
        kube = KubeFactory(
            str(settings.resolve_path(settings.kubeconfig)) if settings.kubeconfig else None
        )
        access = Access(settings, members or StaticGroups(settings))
        dispatcher = Dispatcher(
            settings=settings,
            catalog=catalog,
            registry=registry,
            store=store,
            access=access,
            kube=kube,
        )
        approvals = Approvals(settings, store, access, dispatcher, board or ConsoleBoard())
        dispatcher.approvals = approvals
        foreground = Foreground()
        alerts = AlertProcessor(settings=settings, store=store, catalog=catalog,
                                dispatcher=dispatcher, board=alert_board or ConsoleAlertBoard(),
                                foreground=foreground)
        if isinstance(dispatcher.records, StoreRecords):
            # Alert messages show the silences opsbot makes and expires (bot/alerts/silences.py).
            dispatcher.records.silence_listeners.append(alerts.silence_changed)
        return cls(settings, store, registry, catalog, kube, access, dispatcher, approvals,
                   alerts, report_to=report_to or (lambda _channel: ConsoleReporter()),
                   foreground=foreground, outbox_owner=sender_name(store.replica))

    async def start(self, *, alerts: bool = False) -> None:
        """Background work of a console process: its heartbeat (so a server's recovery leaves
        its runs alone), the scheduler (approval expiry) and, with `alerts`, the alert
        worker (stored notifications)."""
        await self._start_heartbeat()
        await self._start_scheduler()
        if alerts:
            await self.alerts.start()

    async def stop(self) -> None:
        await self.alerts.stop()
        await self._stop_scheduler()
        await self._stop_heartbeat()

    async def _start_scheduler(self) -> None:
        from bot.scheduler import Scheduler

        if self.scheduler is None:
            self.scheduler = Scheduler(
                self.store, self.approvals,
                remind_minutes=self.settings.break_glass_reminder_minutes,
                verify_cron=self.settings.backup.verify_cron,
                verify_backups=self.verify_backups,
            )
            await self.scheduler.start()

    async def _stop_scheduler(self) -> None:
        if self.scheduler is not None:
            await self.scheduler.stop()
            self.scheduler = None

    # -- several replicas (`serve`) ----------------------------------------------------------

    async def start_serving(self) -> None:
        """`serve`'s background work: the heartbeat, the alert worker (every replica takes
        notifications, each claimed by one), and the election; the leader alone recovers
        what dead replicas left and runs the scheduler (see `_lead`)."""
        await self._start_heartbeat()
        self.leadership = self._leadership()
        if isinstance(self.leadership, LeaseElector):
            log.info("replica %s: leader election on the Lease %s", self.store.replica,
                     self.leadership.detail()["lease"])
        else:
            log.info("replica %s leads alone (no leader election)", self.store.replica)
        # A sole leader recovers here, before the worker starts runs of its own.
        await self.leadership.start()
        await self.alerts.start()

    async def stop_serving(self, grace: float = 0.0) -> None:
        """After the work was drained: the alert worker stops (its runs get `grace`), the
        leader's work stops and the Lease is released, and the heartbeat row goes."""
        await self.alerts.stop(grace)
        if self.leadership is not None:
            await self.leadership.stop()  # the scheduler stops before the Lease is released
        await self._stop_heartbeat()

    def _leadership(self) -> Leadership:
        replicas = self.settings.replicas
        elect = replicas.leader_election
        if elect is None:
            elect = self.store.engine.dialect.name == "postgresql"
        if not elect:
            return SoleLeader(self.store.replica, self._lead_alone, self._follow)
        config = LeaseConfig(
            name=replicas.lease_name,
            namespace=replicas.lease_namespace or pod_namespace(),
            identity=self.store.replica,
            lease_duration=replicas.lease_duration_seconds,
            renew_deadline=replicas.renew_deadline_seconds,
            retry_period=replicas.retry_period_seconds,
        )
        try:
            api = self.kube.for_context(None).coordination
        except ConfigError as exc:
            raise ConfigError(
                f"leader election needs the Kubernetes API ({exc}); with one replica and no "
                "cluster set OPSBOT_LEADER_ELECTION=false") from exc
        return LeaseElector(api, config, on_started=self._lead, on_stopped=self._follow)

    async def _lead_alone(self) -> None:
        """A process alone on its database: whatever is running at its start was left by the
        one before it (or a console's run, as always on SQLite)."""
        await self._lead(everything_first=True)

    async def _lead(self, *, everything_first: bool = False) -> None:
        """Became the leader: interrupt what dead replicas left running (now and on every
        heartbeat), then run the scheduler, which expires what fell due meanwhile."""
        try:
            await self._recover_orphans(None if everything_first else self._stale_after())
        except Exception as exc:  # the store is down: the watch below tries again
            log.warning("recovery of dead replicas' runs failed: %s", type(exc).__name__)
        self._background.append(asyncio.create_task(self._watch(alone=everything_first),
                                                    name=_WATCH))
        await self._start_scheduler()

    async def _follow(self) -> None:
        """No longer the leader: the scheduler and the orphan watch stop."""
        for task in [t for t in self._background if t.get_name() == _WATCH]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._background.remove(task)
        await self._stop_scheduler()

    async def _start_heartbeat(self) -> None:
        """Where replicas share the database and read each other's: PostgreSQL, or wherever
        an election is forced."""
        shared = self.store.engine.dialect.name == "postgresql" \
            or self.settings.replicas.leader_election is True
        if not shared or any(t.get_name() == _HEARTBEAT for t in self._background):
            return
        try:
            await asyncio.to_thread(self.store.beat)
        except Exception as exc:
            log.warning("heartbeat not recorded: %s", type(exc).__name__)
        self._background.append(asyncio.create_task(self._heartbeat(), name=_HEARTBEAT))

    async def _stop_heartbeat(self) -> None:
        beating = [t for t in self._background if t.get_name() == _HEARTBEAT]
        if not beating:
            return
        for task in beating:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._background.remove(task)
        # On the beats' own thread, after the beat it may still be running: cancelling the
        # task does not stop that beat, which would write the row back after it was removed.
        beats, self._beats = self._beats, None
        try:
            if beats is None:
                await asyncio.to_thread(self.store.forget_replica)
            else:
                await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(
                    beats, self.store.forget_replica), FORGET_WAIT_S)
        except Exception as exc:  # the store is down: the heartbeat goes stale instead
            log.warning("this replica's heartbeat row was not removed: %s", type(exc).__name__)
        finally:
            if beats is not None:
                beats.shutdown(wait=False)  # a call stuck on the database ends on its own

    async def _heartbeat(self) -> None:
        # Its own thread: beats waiting on a database that does not answer must not take the
        # worker threads that answer users.
        loop = asyncio.get_running_loop()
        beats = self._beats = ThreadPoolExecutor(1, thread_name_prefix="opsbot-heartbeat")
        while True:
            await asyncio.sleep(self.settings.replicas.heartbeat_seconds)
            try:
                await loop.run_in_executor(beats, self.store.beat)
            except Exception as exc:  # the store is down; the next beat tries again
                log.warning("heartbeat not recorded: %s", type(exc).__name__)

    async def _watch(self, *, alone: bool) -> None:
        """The leader's rounds, every half `stale_after`. With other replicas: runs of
        replicas that died meanwhile are interrupted, unstarted triggers started or reported,
        and requests made on followers (which run no scheduler) get their timers. Alone on
        its database, nobody else leaves orphans, but its own triggers may wait on a store
        that failed to start them: those are started or reported, as after a restart."""
        while True:
            await asyncio.sleep(self.settings.replicas.stale_after_seconds / 2)
            try:
                if alone:
                    if self.on_unstarted is not None:
                        await self.on_unstarted(self._stale_after())
                    continue
                await self._recover_orphans(self._stale_after())
                if self.scheduler is not None:
                    await self.scheduler.sweep()
            except Exception as exc:
                log.warning("the leader's round failed: %s", type(exc).__name__)

    async def _recover_orphans(self, stale_after: timedelta | None) -> None:
        interrupted = await self.recover(stale_after=stale_after)
        if interrupted and self.on_interrupted is not None:
            await self.on_interrupted(interrupted)
        await self.release_outbox(stale_after)
        if self.on_unstarted is not None:
            await self.on_unstarted(stale_after)

    async def release_outbox(self, stale_after: timedelta | None) -> int:
        """Outbox rows a dead process was sending wait again at once, not for their lease
        (60 s, while their streams wait): every sender's but this process's (`outbox_owner`)
        without `stale_after` (alone on the database), else those of replicas whose heartbeat
        is older, and of this replica's name from before this start."""
        me = self.outbox_owner
        live: set[str] = set()
        if stale_after is not None:
            live = await asyncio.to_thread(self.store.live_replicas, stale_after)

        def gone(owner: str | None) -> bool:
            if owner is None or stale_after is None:
                return owner != me
            if owner == me:
                return False
            if same_replica(owner, self.store.replica):
                return True  # this replica's name, from before this start
            return not any(same_replica(owner, replica) for replica in live)

        released = await asyncio.to_thread(self.store.release_outgoing, gone)
        if released:
            log.warning("%d outbox rows a process that is gone was sending wait again",
                        released)
        return released

    def _stale_after(self) -> timedelta:
        return timedelta(seconds=self.settings.replicas.stale_after_seconds)

    async def verify_backups(self) -> list[Outcome]:
        """The scheduled verification: a test restore of the newest backup of every configured
        app in every environment (`backup-verify-latest`). Failures are posted to
        `backup.report_channel` (default: the alerts channel); successes only recorded."""
        runbook = self.catalog.by_name("backup-verify-latest")
        channel = self.settings.backup.report_channel or self.settings.alerts.channel
        outcomes = []
        for environment in self.settings.environments.values():
            for app in self.settings.apps_in(environment.name).values():
                text = f"run {runbook.name} app={app.name} --env {environment.name}"
                trigger = Trigger(source="schedule", actor=SCHEDULE_ACTOR, text=text,
                                  channel=channel, via="schedule")
                command = Command(text=text, meta="run", runbook=runbook, env=environment.name,
                                  reason="scheduled backup verification")
                params = coerce_params(runbook, {"app": app.name}, settings=self.settings,
                                       environment=environment.name)
                inv = Invocation(trigger, command, runbook, environment, app, params)
                outcomes.append(await self.dispatcher.run_automatic(
                    inv, FailuresOnly(self.report_to(channel))))
        return outcomes

    async def recover(self, stale_after: timedelta | None = None) -> list[str]:
        """Executions (and automatic runs) a process that is gone left running are marked
        interrupted, never re-run. Only `serve`'s leader recovers: with `stale_after`, only the
        runs of replicas whose heartbeat is older (and this process's name's runs from before
        it started); without, every running one (a process alone on its database)."""
        await self.alerts.recover(stale_after)
        reason = "opsbot restarted while this was running"
        if stale_after is None:
            interrupted = await asyncio.to_thread(self.store.interrupt_running, reason)
        else:
            interrupted = await asyncio.to_thread(self.store.interrupt_orphaned, reason,
                                                  stale_after=stale_after)
        for record in interrupted:
            log.warning("execution %s (%s) was interrupted by a restart", record.id, record.command)
            entry = AuditEntry(
                actor=record.actor,
                source=record.source,
                command=record.command,
                environment=record.environment,
                target=record.target,
                outcome="interrupted",
                execution_id=record.id,
                request_id=record.request_id,
                details={
                    "runbook": record.runbook,
                    "detail": "found running at startup; marked interrupted and not resumed",
                },
            )
            await asyncio.to_thread(self.store.audit, entry)
        return [record.id for record in interrupted]

    def close(self) -> None:
        self.kube.close()
        self.store.close()


def _check_silence_buttons(settings: Settings, catalog: Catalog) -> None:
    """Every `alerts.silence_durations` button must be a command the silence runbook takes
    (1m to 7d as shipped), or it would fail for whoever clicks it at 3 a.m."""
    if catalog.match_verb(["silence"]) is None:
        return
    for duration in settings.alerts.silence_durations:
        try:
            command = parse(f"silence Example --for {duration}", catalog)
            if command.runbook is not None:
                coerce_params(command.runbook, command.raw_params, settings=settings,
                              environment=settings.default_environment)
        except UsageError as exc:
            raise ConfigError(f"alerts.silence_durations: {exc}") from None


class FailuresOnly:
    """Reports an execution only when it ends other than succeeded (and every notice): a
    scheduled check that passes is recorded, not posted."""

    def __init__(self, inner: Reporter) -> None:
        self._inner = inner

    async def execution(self, view: ExecutionView) -> None:
        if view.finished and view.status != "succeeded":
            await self._inner.execution(view)

    async def notice(self, notice: Notice) -> None:
        await self._inner.notice(notice)
