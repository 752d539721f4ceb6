"""The Records a handler may read or change, served from the store (history, locks)."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
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
