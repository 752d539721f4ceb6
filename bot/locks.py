"""One mutating execution per target (environment + app) at a time.

A lock is a lease in the store: renewed while the execution runs, released when it ends,
and left to expire when the process dies, so a crash never holds a target forever. A target
may also be reserved for a pending approval request (docs/approvals.md): the request's own
run takes the reservation over; every other mutating run is refused until it ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from bot import messages
from bot.errors import Refused
from bot.store import LockInfo, Store

__all__ = ["Lease", "Locked", "TargetLocks", "held_message", "lock_key"]

log = logging.getLogger("opsbot.locks")


def lock_key(environment: str, target: str) -> str:
    return f"{environment}/{target}"


class Locked(Refused):
    """Another execution holds the target, or a pending request reserves it."""

    def __init__(self, message: str, holder: LockInfo) -> None:
        hint = messages.reserved_hint(holder.request_id or "") if holder.reservation \
            else messages.locked_hint()
        super().__init__(message, hint=hint)
        self.holder = holder


async def held_message(store: Store, holder: LockInfo, environment: str, target: str,
                       handle: Callable[[str], str]) -> str:
    """Who holds the target and why: the running command, or the request awaiting approval."""
    if holder.execution_id is None:
        request = await asyncio.to_thread(store.get_request, holder.request_id or "")
        return messages.target_reserved(
            target, environment, handle(holder.actor),
            request.command if request else "an earlier command", holder.request_id or "?",
            holder.acquired_at)
    record = await asyncio.to_thread(store.get_execution, holder.execution_id)
    command = record.command if record else "an earlier command"
    return messages.target_locked(target, environment, handle(holder.actor), command,
                                  holder.execution_id, holder.acquired_at)


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
        self, environment: str, target: str, *, execution_id: str, actor: str,
        request_id: str | None = None,
    ) -> Lease:
        """Take the lease (or the reservation of `request_id`, the approved request this
        execution runs) or raise Locked naming the holder, its command and since when."""
        key = lock_key(environment, target)
        held = await asyncio.to_thread(
            self.store.acquire_lock,
            key,
            execution_id=execution_id,
            actor=actor,
            ttl_seconds=self.ttl_seconds,
            request_id=request_id,
        )
        if held.execution_id != execution_id:
            raise Locked(await held_message(self.store, held, environment, target,
                                            self._handle), held)
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
