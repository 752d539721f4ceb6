"""Wiring: one place builds the store, registry, runbook catalog, clients and dispatcher,
so `serve`, `shell`, `run` and `demo` run the same product."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
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
from bot.registry import Registry
from bot.reporting import ExecutionView, Notice, Reporter
from bot.runbooks.loader import Catalog, load_catalog
from bot.runbooks.params import coerce_params
from bot.store import AuditEntry, Store
from bot.trigger import Trigger

if TYPE_CHECKING:
    from bot.scheduler import Scheduler

__all__ = ["SCHEDULE_ACTOR", "FailuresOnly", "Services", "default_database_url"]

#: Who scheduled runs are recorded as.
SCHEDULE_ACTOR = "opsbot"

log = logging.getLogger("opsbot")


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
        registry = registry or Registry.builtin()
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
        alerts = AlertProcessor(settings=settings, store=store, catalog=catalog,
                                dispatcher=dispatcher, board=alert_board or ConsoleAlertBoard())
        return cls(settings, store, registry, catalog, kube, access, dispatcher, approvals,
                   alerts, report_to=report_to or (lambda _channel: ConsoleReporter()))

    async def start(self, *, alerts: bool = False) -> None:
        """Background work of a running process: the scheduler (approval expiry) and, for
        `serve`, the alert worker (stored notifications)."""
        from bot.scheduler import Scheduler

        if self.scheduler is None:
            self.scheduler = Scheduler(
                self.store, self.approvals,
                remind_minutes=self.settings.break_glass_reminder_minutes,
                verify_cron=self.settings.backup.verify_cron,
                verify_backups=self.verify_backups,
            )
            await self.scheduler.start()
        if alerts:
            await self.alerts.start()

    async def stop(self) -> None:
        await self.alerts.stop()
        if self.scheduler is not None:
            await self.scheduler.stop()
            self.scheduler = None

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

    async def recover(self) -> list[str]:
        """Executions (and automatic runs) a previous process left running are marked
        interrupted, never re-run. Only `serve` recovers: a console sharing the database must
        not interrupt what a running server does."""
        await self.alerts.recover()
        interrupted = await asyncio.to_thread(
            self.store.interrupt_running, "opsbot restarted while this was running"
        )
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
