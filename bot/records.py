"""The Records a handler may read or change, served from the store (history, locks)."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from bot.locks import lock_key
from bot.store import Store

__all__ = ["StoreRecords"]


class StoreRecords:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def audit_records(
        self, *, environment: str, target: str, outcomes: tuple[str, ...], limit: int
    ) -> list[dict[str, Any]]:
        return await asyncio.to_thread(
            self._store.audit_records,
            environment=environment,
            target=target,
            outcomes=list(outcomes),
            limit=limit,
        )

    async def force_unlock(self, *, environment: str, target: str) -> dict[str, Any] | None:
        held = await asyncio.to_thread(self._store.force_unlock, lock_key(environment, target))
        return asdict(held) if held else None

    async def lock_on(self, *, environment: str, target: str) -> dict[str, Any] | None:
        held = await asyncio.to_thread(self._store.get_lock, lock_key(environment, target))
        return asdict(held) if held else None

    async def held_locks(self) -> list[dict[str, Any]]:
        """The target locks in force, each with the command of the execution holding it."""
        def read() -> list[dict[str, Any]]:
            out = []
            for held in self._store.held_locks():
                environment, _, target = held.target.partition("/")
                execution = self._store.get_execution(held.execution_id)
                out.append({**asdict(held), "environment": environment, "target": target,
                            "command": execution.command if execution else None,
                            "request_id": execution.request_id if execution else None})
            return out

        return await asyncio.to_thread(read)

    async def pause_automation(self, *, scope: str, duration: timedelta | None, actor: str,
                               reason: str | None) -> datetime | None:
        return await asyncio.to_thread(self._store.pause_automation, scope=scope,
                                       duration=duration, actor=actor, reason=reason)

    async def resume_automation(self, *, scope: str) -> dict[str, Any]:
        lifted, closed = await asyncio.to_thread(self._store.resume_automation, scope=scope)
        return {"lifted": lifted, "closed": [asdict(b) for b in closed]}

    async def automation_status(self) -> dict[str, Any]:
        status = await asyncio.to_thread(self._store.automation_status)
        return {"pauses": [asdict(p) for p in status.pauses],
                "breakers": [asdict(b) for b in status.breakers],
                "recent": [asdict(r) for r in status.recent]}
