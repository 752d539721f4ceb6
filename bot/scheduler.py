"""Timed work that must survive restarts (approval expiry, break-glass reminders, the scheduled
backup verification), on APScheduler 3 with its job store in opsbot's own database.

Jobs are stored by reference (`bot.scheduler:expire_request_job`) with plain arguments, so a
restarted process finds them and runs any that fell due while it was down.

APScheduler 3 does not share a job store between running schedulers, so with several
replicas only the leader runs one (bot/leader.py); a follower that becomes leader starts it
and runs what fell due. Requests made on a follower get no timer there: the leader calls
`sweep` periodically (bot/services.py), which expires what is due and times every open
request that has none. (Not an APScheduler job: AsyncIOScheduler reads its job store on the
event loop, which a database that does not answer would then block at every wake-up.) The
jobs stay safe to run twice (a leader deposed mid-job, a console's scheduler next to it):
expiring an expired request changes nothing and says nothing, a reminder is claimed once per
interval, and settling a settled request is a no-op. See docs/approvals.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from bot.store import Store
from bot.store.migrate import SCHEDULER_JOBS_TABLE

if TYPE_CHECKING:
    from bot.approvals.service import Approvals

__all__ = [
    "JOBS_TABLE",
    "Scheduler",
    "expire_request_job",
    "remind_job",
    "settle_request_job",
    "verify_backups_job",
]

log = logging.getLogger("opsbot.scheduler")
# One name for the table, shared with the migrations, which must leave it alone.
JOBS_TABLE = SCHEDULER_JOBS_TABLE

# The process's running Approvals, for stored jobs (which can only name module functions).
_approvals: Approvals | None = None
_scheduler: Scheduler | None = None
_verify_backups: Callable[[], Awaitable[object]] | None = None
VERIFY_JOB = "verify-backups"
_VERIFY_GRACE = 3600


async def expire_request_job(request_id: str) -> None:
    if _approvals is None:
        log.warning("expiry of %s fell due with no approvals service running", request_id)
        return
    await _approvals.expire(request_id)
    if _scheduler is not None:
        # An expired break-glass request is reminded of no more.
        _scheduler.remove(f"remind-{request_id}")


async def remind_job(request_id: str, every_seconds: float | None = None) -> None:
    if _approvals is None or _scheduler is None:
        return
    if not await _approvals.remind(request_id, every_seconds):
        _scheduler.remove(f"remind-{request_id}")


async def settle_request_job(request_id: str) -> None:
    if _approvals is None:
        log.warning("the check of approved %s fell due with no approvals service", request_id)
        return
    await _approvals.settle(request_id)


async def verify_backups_job() -> None:
    if _verify_backups is None or _scheduler is None:
        log.warning("the backup verification fell due with no services running")
        return
    # One run per scheduled time across processes (a deposed leader mid-wake-up, a console's
    # scheduler next to the server's): the first to claim the fire time runs it.
    fire = _scheduler.latest_verify_fire(datetime.now(UTC))
    key = f"schedule:{VERIFY_JOB}:{fire.isoformat()}"
    if not await asyncio.to_thread(_scheduler.claim, key):
        log.info("the backup verification of %s ran elsewhere already", fire.isoformat())
        return
    await _verify_backups()


class Scheduler:
    def __init__(self, store: Store, approvals: Approvals, *, remind_minutes: float = 15,
                 verify_cron: str | None = None,
                 verify_backups: Callable[[], Awaitable[object]] | None = None) -> None:
        self._verify_cron = verify_cron
        self._verify_backups = verify_backups
        self._approvals = approvals
        self._remind_minutes = remind_minutes
        self._store = store
        self._scheduler = AsyncIOScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=store.engine, tablename=JOBS_TABLE)},
            # A job missed while opsbot was down runs once when it is back, however late.
            job_defaults={"coalesce": True, "misfire_grace_time": None, "max_instances": 1},
            timezone=UTC,
        )

    async def start(self) -> None:
        """Start in the running event loop; expire what fell due while nobody was watching."""
        global _approvals, _scheduler, _verify_backups
        _approvals, _scheduler = self._approvals, self
        _verify_backups = self._verify_backups
        self._approvals.schedule_expiry = self.schedule_expiry
        self._approvals.schedule_reminder = self.schedule_reminder
        self._approvals.schedule_settle = self.schedule_settle
        self._scheduler.start()
        if self._verify_cron and self._verify_backups is not None:
            # The cron in the config is the truth: a changed one replaces the stored job.
            self._scheduler.add_job(
                "bot.scheduler:verify_backups_job",
                trigger=CronTrigger.from_crontab(self._verify_cron, timezone=UTC),
                id=VERIFY_JOB, replace_existing=True,
                misfire_grace_time=_VERIFY_GRACE,  # missed by more: wait for the next one
            )
        else:
            self.remove(VERIFY_JOB)
        await self.sweep()
        await self._approvals.recover_approved()

    async def sweep(self) -> None:
        """Expire what is due; every open request has its timer, even one made while no
        scheduler ran (`opsbot run`, a follower replica). Timers already in the job store
        are kept as they are, not made again."""
        await self._approvals.expire_due()
        for request in await asyncio.to_thread(self._store.pending_requests):
            if self._scheduler.get_job(f"expire-{request.id}") is None:
                self.schedule_expiry(request.id, request.expires_at)
            if request.emergency and self._scheduler.get_job(f"remind-{request.id}") is None:
                self.schedule_reminder(request.id)

    def claim(self, key: str) -> bool:
        return self._store.claim_delivery(key)

    def latest_verify_fire(self, now: datetime) -> datetime:
        """The scheduled time the verification job now runs for: the cron's latest fire time
        within its misfire grace (an hour), else `now` to the minute."""
        latest = now.replace(second=0, microsecond=0)
        if not self._verify_cron:
            return latest
        trigger = CronTrigger.from_crontab(self._verify_cron, timezone=UTC)
        fire = trigger.get_next_fire_time(None, now - timedelta(seconds=_VERIFY_GRACE + 60))
        found = None
        while fire is not None and fire <= now:
            found = fire
            fire = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
        return found or latest

    def schedule_expiry(self, request_id: str, when: datetime) -> None:
        self._scheduler.add_job(
            "bot.scheduler:expire_request_job", trigger="date", run_date=when,
            args=[request_id], id=f"expire-{request_id}", replace_existing=True,
        )

    def schedule_reminder(self, request_id: str) -> None:
        every = self._remind_minutes * 60.0
        self._scheduler.add_job(
            "bot.scheduler:remind_job", trigger="interval", seconds=every,
            args=[request_id, every], id=f"remind-{request_id}", replace_existing=True,
        )

    def schedule_settle(self, request_id: str, when: datetime) -> None:
        self._scheduler.add_job(
            "bot.scheduler:settle_request_job", trigger="date", run_date=when,
            args=[request_id], id=f"settle-{request_id}", replace_existing=True,
        )

    def remove(self, job_id: str) -> None:
        # Never made, or removed meanwhile (by another replica sharing the store): fine.
        with contextlib.suppress(JobLookupError):
            self._scheduler.remove_job(job_id)

    def jobs(self) -> list[tuple[str, datetime | None]]:
        return [(job.id, job.next_run_time) for job in self._scheduler.get_jobs()]

    async def stop(self) -> None:
        global _approvals, _scheduler, _verify_backups
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        if _approvals is self._approvals:
            _approvals, _scheduler, _verify_backups = None, None, None


