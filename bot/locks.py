"""One mutating execution per target (environment + app) at a time.

A lock is a lease in the store: renewed while the execution runs, released when it ends,
and left to expire when the process dies, so a crash never holds a target forever.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from bot import messages
from bot.errors import Refused
from bot.store import LockInfo, Store

__all__ = ["Lease", "Locked", "TargetLocks", "lock_key"]

log = logging.getLogger("opsbot.locks")


def lock_key(environment: str, target: str) -> str:
    return f"{environment}/{target}"


class Locked(Refused):
    """Another execution holds the target."""

    def __init__(self, message: str, holder: LockInfo) -> None:
        super().__init__(message, hint=messages.locked_hint())
        self.holder = holder


@dataclass
class Lease:
    key: str
    execution_id: str
    _renewer: asyncio.Task[None]
    _locks: TargetLocks
    _released: bool = False

    async def release(self) -> None:
        """Free the target; later calls do nothing."""
        if self._released:
            return
        self._released = True
        self._renewer.cancel()
        try:
            await asyncio.to_thread(
                self._locks.store.release_lock, self.key, execution_id=self.execution_id
            )
        except Exception:  # the lease expires anyway; never hide the execution's outcome
            log.exception("releasing lock %s failed", self.key)


class TargetLocks:
    ttl_seconds = 120.0
    renew_seconds = 30.0

    def __init__(self, store: Store, handle: Callable[[str], str]) -> None:
        self.store = store
        self._handle = handle  # user id -> display name, for "alice is running ..."

    async def acquire(
        self, environment: str, target: str, *, execution_id: str, actor: str
    ) -> Lease:
        """Take the lease or raise Locked naming the holder, its command and since when."""
        key = lock_key(environment, target)
        held = await asyncio.to_thread(
            self.store.acquire_lock,
            key,
            execution_id=execution_id,
            actor=actor,
            ttl_seconds=self.ttl_seconds,
        )
        if held.execution_id != execution_id:
            record = await asyncio.to_thread(self.store.get_execution, held.execution_id)
            command = record.command if record else "an earlier command"
            raise Locked(
                messages.target_locked(
                    target,
                    environment,
                    self._handle(held.actor),
                    command,
                    held.execution_id,
                    held.acquired_at,
                ),
                held,
            )
        renewer = asyncio.create_task(self._renew(key, execution_id), name=f"opsbot lease {key}")
        return Lease(key, execution_id, renewer, self)

    async def _renew(self, key: str, execution_id: str) -> None:
        while True:
            await asyncio.sleep(self.renew_seconds)
            try:
                still = await asyncio.to_thread(
                    self.store.renew_lock,
                    key,
                    execution_id=execution_id,
                    ttl_seconds=self.ttl_seconds,
                )
            except Exception:
                log.exception("renewing lock %s failed; will retry", key)
                continue
            if not still:
                log.error("lock %s was taken from execution %s", key, execution_id)
                return
