"""The approval flow: request (with the dry-run plan), approve, deny, cancel, expire, and run
the approved change only if its plan is still the one approvers saw.

Decisions are taken as the Trigger's actor, which front ends take from Slack's signed
payload (`user.id`) or the console's `--as`; never from message text.

Timed work (expiry, break-glass reminders, settling requests a stopped process left
`approved`) runs from stored scheduler jobs; every one of them is safe to run twice, since
each replica runs its own scheduler against the shared job store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from bot import messages
from bot.access import Access
from bot.approvals.board import Board
from bot.approvals.view import ApprovalView, view_of
from bot.checklists import checklists_for, unconfirmed
from bot.commands import parse
from bot.config import Settings
from bot.errors import Denied, Refused, UnknownName
from bot.invocation import Invocation
from bot.locks import Locked, held_message, lock_key
from bot.metrics import APPROVALS
from bot.reporting import Notice, Reporter
from bot.runbooks.params import coerce_params
from bot.store import ApprovalRequest, AuditEntry, Store, TargetHeld
from bot.store.approvals import Unfinished
from bot.trigger import SOURCES, Source, Trigger

if TYPE_CHECKING:
    from bot.dispatcher import Dispatcher, Outcome

__all__ = ["Approvals"]

log = logging.getLogger("opsbot.approvals")
BREAK_GLASS_ACK_SECONDS = 7 * 24 * 3600  # reminders stop after a week even if nobody acks
# How long an approved request may take to start its run (the plan is made again first)
# before a starting opsbot calls it stuck. Generous, so that a process starting next to a
# busy one never voids a request the other is about to run.
START_GRACE = timedelta(minutes=10)


class Approvals:
    def __init__(self, settings: Settings, store: Store, access: Access,
                 dispatcher: Dispatcher, board: Board) -> None:
        self.settings = settings
        self.store = store
        self.access = access
        self.dispatcher = dispatcher
        self.board = board
        # Set by the scheduler when one runs (not in `opsbot run`, whose requests get their
        # timers when a scheduler next starts).
        self.schedule_expiry: Callable[[str, datetime], None] | None = None
        self.schedule_reminder: Callable[[str], None] | None = None
        self.schedule_settle: Callable[[str, datetime], None] | None = None

    # -- requesting --------------------------------------------------------------------------

    async def request(self, inv: Invocation, reporter: Reporter) -> Outcome:
        from bot.dispatcher import Outcome

        trigger, command, runbook, environment, app, params = inv.parts()
        if any(spec.secret for spec in runbook.parameters.values()):
            raise Refused(messages.secret_params_need_no_approval())
        allowed = environment.approval.channels
        if allowed and trigger.source == "slack" and trigger.channel not in allowed:
            raise Denied(messages.requests_only_in(environment.name, allowed))
        preview = await self.dispatcher.preview(inv)
        if preview.refusal is not None:  # a no-op, or refused for cause: nothing to approve
            raise preview.refusal
        if not preview.ok:
            raise Refused(messages.preview_failed(preview.problem))
        policy = environment.approval
        # A mutating request reserves its target while approvers decide (Atlantis-style):
        # nothing else changes it meanwhile, so what they approve is what will run.
        reserve = lock_key(environment.name, app.name) if runbook.mutating and app else None
        try:
            request = await asyncio.to_thread(
                self.store.create_request, runbook=runbook.name, command=command.text,
                environment=environment.name, target=app.name if app else None, params=params,
                reason=command.reason, requester=trigger.actor, source=trigger.source,
                channel=trigger.channel, plan_text="\n".join(preview.lines),
                plan_digest=preview.digest, required=policy.approvals,
                eligible_users=list(policy.users), eligible_groups=list(policy.groups),
                allow_self=policy.allow_self_approval, ttl_seconds=policy.ttl_minutes * 60,
                context=dict(inv.context), reserve=reserve,
                checklist=checklists_for(runbook.name, environment, app).before,
            )
        except TargetHeld as exc:
            assert app is not None
            raise Locked(await held_message(self.store, exc.holder, environment.name, app.name,
                                            self.settings.handle), exc.holder) from None
        await self._audit(request, trigger.actor, "requested", detail=preview.digest)
        view = await self._show(request)
        if self.schedule_expiry is not None:
            self.schedule_expiry(request.id, request.expires_at)
        await reporter.notice(Notice(
            "info", messages.approval_requested(request.id, environment.name, policy.approvals,
                                                view.approvers),
            hint=messages.approval_hint(request.id, len(request.checklist))))
        return Outcome("pending_approval", request_id=request.id)

    async def break_glass(self, inv: Invocation, reporter: Reporter) -> Outcome:
        """Run now, without approval, for roles allowed to: loudly, flagged in the audit log,
        and with reminders until an approver acknowledges it after the fact."""
        trigger, command, runbook, environment, app, params = inv.parts()
        if not await self.access.may_break_glass(trigger, runbook.name, environment):
            raise Denied(messages.break_glass_denied(self.settings.handle(trigger.actor),
                                                     environment.name))
        if runbook.mutating and app is not None:
            # Held (a run, or a request awaiting approval): refused before anything is recorded
            # or announced; the run would be refused by the lock anyway.
            held = await asyncio.to_thread(self.store.get_lock,
                                           lock_key(environment.name, app.name))
            if held is not None:
                raise Locked(await held_message(self.store, held, environment.name, app.name,
                                                self.settings.handle), held)
        reason = command.emergency or ""
        policy = environment.approval
        request = await asyncio.to_thread(
            self.store.create_request, runbook=runbook.name, command=command.text,
            environment=environment.name, target=app.name if app else None, params=params,
            reason=reason, requester=trigger.actor, source=trigger.source,
            channel=trigger.channel, plan_text="(break-glass: run without a plan review)",
            plan_digest="", required=1, eligible_users=list(policy.users),
            eligible_groups=list(policy.groups), allow_self=False,
            ttl_seconds=BREAK_GLASS_ACK_SECONDS, emergency=True,
        )
        await self._audit(request, trigger.actor, "break-glass", detail=reason)
        view = await self._show(request)
        await self.board.announce(view, messages.break_glass_announcement(view))
        if self.schedule_reminder is not None:
            self.schedule_reminder(request.id)
        if self.schedule_expiry is not None:
            # Reminders stop when nobody acknowledged it within a week: the request expires.
            self.schedule_expiry(request.id, request.expires_at)
        outcome = await self.dispatcher.execute(
            replace(inv, command=replace(command, dry_run=False)), reporter,
            request_id=request.id)
        return replace(outcome, request_id=request.id)

    async def remind(self, request_id: str, every_seconds: float | None = None) -> bool:
        """Remind approvers of an unacknowledged break-glass change, at most once per interval
        whoever calls; False once it is acknowledged or past its week (the job then stops)."""
        every = every_seconds or self.settings.break_glass_reminder_minutes * 60.0
        verdict, request = await asyncio.to_thread(self.store.claim_reminder, request_id, every)
        if verdict == "expired":
            await self.expire(request_id)
        if verdict in ("expired", "stop") or request is None:
            return False
        if verdict == "remind":
            view = self._view(request)
            await self.board.announce(view, messages.break_glass_reminder(view))
        return True

    # -- deciding ----------------------------------------------------------------------------

    async def approve(self, trigger: Trigger, request_id: str, reporter: Reporter,
                      confirmed: tuple[int, ...] | None = None) -> Outcome:
        """Approve as `trigger.actor`, who confirms the request's checklist items (numbered
        from 1) in `confirmed`: every one of them, or nothing is recorded."""
        from bot.dispatcher import Outcome

        request = await self._open(request_id)
        await self._check_approver(trigger.actor, request)
        checklist = () if request.emergency else request.checklist
        if confirmed and any(n > len(checklist) for n in confirmed):
            raise Refused(messages.checklist_no_such_item(request_id, len(checklist)))
        missing = unconfirmed(checklist, confirmed)
        if missing:
            raise Refused(messages.checklist_unconfirmed(request_id, missing),
                          hint=messages.checklist_hint(request_id, len(checklist),
                                                       trigger.source))
        outcome = await asyncio.to_thread(self.store.approve, request_id, trigger.actor)
        match outcome.result:
            case "already_approved":
                raise Refused(messages.already_approved(request_id))
            case "expired":
                await self.expire(request_id)
                raise Refused(messages.approval_expired(request_id))
            case "not_pending":
                raise Refused(messages.approval_not_open(request_id, outcome.request.status))
        if outcome.request.emergency:
            # After the fact: the change already ran; approving it acknowledges it.
            await self._audit(outcome.request, trigger.actor, "acknowledged")
            await self._show(outcome.request)
            await reporter.notice(Notice("info", messages.break_glass_acknowledged(
                self._view(outcome.request))))
            return Outcome("info", request_id=request_id)
        if checklist:  # who confirmed what: the items as the approver saw them
            await self._audit(outcome.request, trigger.actor, "approved",
                              confirmed=list(checklist))
        else:
            await self._audit(outcome.request, trigger.actor, "approved")
        view = await self._show(outcome.request)
        if outcome.result != "complete":
            await reporter.notice(Notice("info", messages.approval_recorded(view)))
            return Outcome("info", request_id=request_id)
        return await self._run_approved(outcome.request)

    async def deny(self, trigger: Trigger, request_id: str, reason: str,
                   reporter: Reporter) -> Outcome:
        from bot.dispatcher import Outcome

        request = await self._open(request_id)
        await self._check_approver(trigger.actor, request, deciding="deny")
        outcome = await asyncio.to_thread(self.store.deny, request_id, trigger.actor, reason)
        if outcome.result != "denied":
            raise Refused(messages.approval_not_open(request_id, outcome.request.status))
        await self._audit(outcome.request, trigger.actor, "denied", detail=reason, reason=reason)
        view = await self._show(outcome.request)
        await self.board.tell(outcome.request.requester, view,
                              Notice("denied", messages.request_denied_notice(view)))
        await reporter.notice(Notice("info", messages.approval_headline(
            "denied", view.command, view.environment)))
        return Outcome("info", request_id=request_id)

    async def cancel(self, trigger: Trigger, request_id: str, reporter: Reporter) -> Outcome:
        from bot.dispatcher import Outcome

        request = await self._open(request_id)
        if trigger.actor != request.requester:
            raise Denied(messages.only_requester_cancels(self._view(request)))
        outcome = await asyncio.to_thread(self.store.cancel, request_id, trigger.actor)
        if outcome.result != "cancelled":
            raise Refused(messages.approval_not_open(request_id, outcome.request.status))
        await self._audit(outcome.request, trigger.actor, "cancelled")
        view = await self._show(outcome.request)
        await reporter.notice(Notice("info", messages.approval_headline(
            "cancelled", view.command, view.environment)))
        return Outcome("info", request_id=request_id)

    async def pending(self) -> Notice:
        requests = await asyncio.to_thread(self.store.pending_requests)
        return messages.pending_list([self._view(r) for r in requests])

    async def expire(self, request_id: str) -> None:
        """Mark a request past its expiry as expired, update it and tell the requester.

        A no-op (no message, no audit record) unless this call made the change: the store's
        conditional update lets exactly one of several callers (replicas) expire it."""
        request = await asyncio.to_thread(self.store.expire, request_id)
        if request is not None:
            await self._expired(request)

    async def expire_due(self) -> None:
        for request in await asyncio.to_thread(self.store.expire_due):
            await self._expired(request)

    async def _expired(self, request: ApprovalRequest) -> None:
        await self._audit(request, "opsbot", "expired")
        view = await self._show(request)
        text = messages.break_glass_unacknowledged(view) if request.emergency \
            else messages.request_expired_notice(view)
        await self.board.tell(request.requester, view, Notice("refused", text))

    # -- requests a stopped process left approved -----------------------------------------

    async def recover_approved(self) -> None:
        """Settle requests left `approved` without their run recorded (the process stopped
        after the approval, before or while the change ran): reported, never run again.

        One with an execution that is still running is left alone (a process is running it;
        if that process died, `serve`'s recovery marks the run interrupted first). One with no
        run yet gets `START_GRACE` from its approval before it is called stuck: until then
        another process may be about to start it, so a check is scheduled instead."""
        for found in await asyncio.to_thread(self.store.unfinished_requests, START_GRACE):
            await self._settle_unfinished(found)

    async def settle(self, request_id: str) -> None:
        """The scheduled check of one approved request (see `recover_approved`)."""
        for found in await asyncio.to_thread(self.store.unfinished_requests, START_GRACE,
                                             request_id):
            await self._settle_unfinished(found)

    async def _settle_unfinished(self, found: Unfinished) -> None:
        if found.run is not None and found.run.status == "running":
            return
        if found.run is None and not found.overdue:
            if self.schedule_settle is not None:
                self.schedule_settle(found.request.id, found.start_by)
            return
        await self._close_unfinished(found.request, messages.approval_never_started())

    async def _close_unfinished(self, request: ApprovalRequest, problem: str | None) -> None:
        """Approved, but no run recorded on it: void if nothing ran, else executed with the run
        it got; the message updated, the requester told, an audit record written."""
        run = await asyncio.to_thread(self.store.latest_request_run, request.id)
        view = self._view(request)
        outcome = ""
        if run is None or run.status == "refused":
            # Refused before any step (e.g. the target was locked): nothing ran.
            note = messages.approval_not_started(view, run.summary if run else problem)
            closed = await asyncio.to_thread(self.store.void, request.id, note,
                                             run.id if run else None)
            outcome = "not-started"
        elif run.status in ("interrupted", "running"):
            note = messages.approval_run_interrupted(view)
            closed = await asyncio.to_thread(self.store.mark_executed, request.id, run.id, note)
            outcome = "interrupted"
        else:  # it ran to its end; only recording it on the request was lost
            closed = await asyncio.to_thread(self.store.mark_executed, request.id, run.id)
        if closed is None:
            return  # settled meanwhile by whoever ran it, or by another replica
        view = await self._show(closed)
        if outcome:
            log.warning("approved request %s: %s", request.id, outcome)
            await self._audit(closed, "opsbot", outcome, detail=problem or "")
            await self.board.tell(closed.requester, view, Notice("refused", closed.note or ""))

    # -- running an approved request --------------------------------------------------------

    async def _run_approved(self, request: ApprovalRequest) -> Outcome:
        """Run an approved request once. Whatever stops it from running leaves the request
        closed and its requester told, never `approved` for ever."""
        try:
            outcome = await self._start_approved(request)
        except Exception as exc:
            await self._close_unfinished(request, str(exc) or type(exc).__name__)
            raise
        return outcome

    async def _start_approved(self, request: ApprovalRequest) -> Outcome:
        from bot.dispatcher import Outcome

        source: Source = request.source if request.source in SOURCES else "console"  # type: ignore[assignment]
        trigger = Trigger(source=source, actor=request.requester, text=request.command,
                          channel=request.channel, via="approval")
        command = parse(request.command, self.dispatcher.catalog)
        if command.runbook is None:
            raise Refused(messages.approval_not_open(request.id, "not runnable"))
        runbook = command.runbook
        environment = self.settings.environment(request.environment)
        params = coerce_params(runbook, command.raw_params, settings=self.settings,
                               environment=environment.name)
        app = self.settings.app(params["app"], environment.name) if params.get("app") else None
        inv = Invocation(trigger, replace(command, dry_run=False), runbook, environment, app,
                         params, context=request.context)
        preview = await self.dispatcher.preview(inv)
        if not preview.ok or preview.digest != request.plan_digest:
            voided = await asyncio.to_thread(self.store.void, request.id,
                                             messages.plan_changed(self._view(request)))
            current = voided or request
            await self._audit(current, "opsbot", "void",
                              detail=f"plan {request.plan_digest[:12]} -> {preview.digest[:12]}")
            view = await self._show(current)
            await self.board.tell(request.requester, view,
                                  Notice("refused", messages.plan_changed(view)))
            return Outcome("refused", request_id=request.id)
        now = await asyncio.to_thread(self.store.get_request, request.id)
        if now is None or now.status != "approved":
            # Settled meanwhile (a starting process found it overdue): it must not run now.
            raise Refused(messages.approval_not_open(request.id, now.status if now else "gone"))
        view = self._view(request)
        outcome = await self.dispatcher.execute(inv, self.board.reporter(view),
                                                request_id=request.id)
        if outcome.execution_id and outcome.status != "refused":
            done = await asyncio.to_thread(self.store.mark_executed, request.id,
                                           outcome.execution_id)
            if done is not None:
                await self._show(done)
        else:
            # Refused before it changed anything (the target was locked, or a step found
            # nothing to do): the request is void, its requester told why.
            await self._close_unfinished(request, None)
        return replace(outcome, request_id=request.id)

    # -- helpers -----------------------------------------------------------------------------

    async def _open(self, request_id: str) -> ApprovalRequest:
        request = await asyncio.to_thread(self.store.get_request, request_id)
        if request is None:
            raise UnknownName("approval request", request_id)
        return request

    async def _check_approver(self, actor: str, request: ApprovalRequest,
                              deciding: str = "approve") -> None:
        view = self._view(request)
        if request.status != "pending":
            raise Refused(messages.approval_not_open(request.id, request.status))
        if deciding == "approve" and actor == request.requester and not request.allow_self:
            raise Denied(messages.self_approval_refused(), hint=messages.approval_denied_hint())
        eligible = actor in request.eligible_users
        for group in request.eligible_groups:
            if eligible:
                break
            eligible = await self.access.in_group(actor, group)
        if not eligible:
            raise Denied(messages.not_an_approver(self.settings.handle(actor), view, deciding),
                         hint=messages.approval_denied_hint())

    def _view(self, request: ApprovalRequest) -> ApprovalView:
        return view_of(request, self.settings.handle)

    async def _show(self, request: ApprovalRequest) -> ApprovalView:
        view = self._view(request)
        try:
            await self.board.show(view)
        except Exception:  # the decision is recorded; a chat hiccup must not undo it
            log.exception("showing request %s failed", request.id)
        return view

    async def _audit(self, request: ApprovalRequest, actor: str, outcome: str,
                     detail: str = "", **more: str | list[str]) -> None:
        entry = AuditEntry(
            actor=actor, source="approval", command=request.command,
            environment=request.environment, target=request.target, outcome=outcome,
            execution_id=request.execution_id, request_id=request.id,
            details={"runbook": request.runbook, "requester": request.requester,
                     "detail": detail, "plan_digest": request.plan_digest, **more},
        )
        await asyncio.to_thread(self.store.audit, entry)
        APPROVALS.labels(outcome=outcome).inc()

