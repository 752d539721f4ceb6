"""The Records a handler may read or change, served from the store (history, locks,
executions, the silences opsbot made)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from bot.locks import lock_key
from bot.store import Store, StoreError

__all__ = ["StoreRecords", "message_link"]

log = logging.getLogger("opsbot.records")

SilenceListener = Callable[[dict[str, str]], Awaitable[None]]


def message_link(workspace_url: str | None, channel: str | None, ts: str | None) -> str | None:
    """Slack's permalink form, `https://<team>.slack.com/archives/<channel>/p<ts without the
    dot>`, built from the workspace URL `auth.test` gave; None without one of the three."""
    if not (workspace_url and channel and ts) or not ts.replace(".", "").isdigit():
        return None
    return f"{workspace_url.rstrip('/')}/archives/{channel}/p{ts.replace('.', '')}"


class StoreRecords:
    def __init__(self, store: Store) -> None:
        self._store = store
        # The Slack workspace's URL once `auth.test` answered (bot/slack/server.py): links to
        # execution messages are made from it. None in the console.
        self.workspace_url: str | None = None
        # Told the matchers of each silence made or expired (the alert worker re-shows the
        # alert messages it covers).
        self.silence_listeners: list[SilenceListener] = []

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

    async def cancel_requested(self, execution_id: str) -> str | None:
        try:
            return await asyncio.to_thread(self._store.cancel_requested, execution_id)
        except StoreError:  # a hiccup reads as "not asked", as between steps
            log.warning("could not read whether %s was cancelled", execution_id)
            return None

    async def lock_on(self, *, environment: str, target: str) -> dict[str, Any] | None:
        held = await asyncio.to_thread(self._store.get_lock, lock_key(environment, target))
        return asdict(held) if held else None

    async def held_locks(self) -> list[dict[str, Any]]:
        """The target locks in force (running executions' leases, and reservations of requests
        awaiting approval with `execution_id` None), each with its command, `environment` and
        `target` (the app)."""
        held = await asyncio.to_thread(self._store.held_locks)
        out = []
        for lock in held:
            environment, _, target = lock.target.partition("/")
            out.append({**asdict(lock), "environment": environment, "target": target})
        return out

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

    async def executions(self, *, limit: int, running: bool, environment: str | None,
                         target: str | None) -> list[dict[str, Any]]:
        found = await asyncio.to_thread(self._store.recent_executions, limit,
                                        environment=environment, target=target, running=running)
        return [{
            "id": ex.id, "runbook": ex.runbook, "command": ex.command, "actor": ex.actor,
            "source": ex.source, "environment": ex.environment, "target": ex.target,
            "status": ex.status, "dry_run": ex.dry_run, "request_id": ex.request_id,
            "started_at": ex.started_at, "finished_at": ex.finished_at,
            "cancel_requested_by": ex.cancel_requested_by,
            "link": message_link(self.workspace_url, ex.channel, ex.ts),
        } for ex in found]

    async def silence_made(self, *, silence_id: str, matchers: dict[str, str],
                           created_by: str, ends_at: datetime, execution_id: str) -> None:
        await asyncio.to_thread(self._store.silence_made, silence_id, matchers=matchers,
                                created_by=created_by, ends_at=ends_at,
                                execution_id=execution_id)
        await self._tell(matchers)

    async def silence_expired(self, *, silence_id: str, by: str) -> None:
        record = await asyncio.to_thread(self._store.silence_expired, silence_id, by)
        if record is not None:
            await self._tell(record.matchers)

    async def _tell(self, matchers: dict[str, str]) -> None:
        for listener in self.silence_listeners:
            try:
                await listener(matchers)
            except Exception:  # the silence is made and recorded; a message update is extra
                log.exception("updating messages after a silence change failed")
