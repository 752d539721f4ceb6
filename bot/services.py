"""Wiring: one place builds the store, registry, runbook catalog, clients and dispatcher,
so `serve`, `shell`, `run` and `demo` run the same product."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bot.access import Access, GroupMembers, StaticGroups
from bot.alerts.console import ConsoleAlertBoard
from bot.alerts.processor import AlertProcessor
from bot.alerts.view import AlertBoard
from bot.approvals.board import Board
from bot.approvals.service import Approvals
from bot.config import Settings
from bot.console.board import ConsoleBoard
from bot.dispatcher import Dispatcher
from bot.kube import KubeFactory
from bot.registry import Registry
from bot.runbooks.loader import Catalog, load_catalog
from bot.store import AuditEntry, Store

if TYPE_CHECKING:
    from bot.scheduler import Scheduler

__all__ = ["Services", "default_database_url"]

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
    ) -> Services:
        """Load runbooks first (an invalid one stops startup), then open the store."""
        registry = registry or Registry.builtin()
        catalog = load_catalog([settings.resolve_path(d) for d in settings.runbook_dirs], registry)
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
                   alerts)

    async def start(self, *, alerts: bool = False) -> None:
        """Background work of a running process: the scheduler (approval expiry) and, for
        `serve`, the alert worker (stored notifications)."""
        from bot.scheduler import Scheduler

        if self.scheduler is None:
            self.scheduler = Scheduler(
                self.store, self.approvals,
                remind_minutes=self.settings.break_glass_reminder_minutes,
            )
            await self.scheduler.start()
        if alerts:
            await self.alerts.start()

    async def stop(self) -> None:
        await self.alerts.stop()
        if self.scheduler is not None:
            await self.scheduler.stop()
            self.scheduler = None

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
