"""The one path every trigger takes: parse, resolve, authorize, gate, persist, run, report.

Slack, the console, and later alerts and schedules all call `Dispatcher.dispatch`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from bot import messages
from bot.access import Access, matches
from bot.cancelling import cancel_execution
from bot.checklists import checklists_for
from bot.commands import Command, parse, rebuilt
from bot.config import AppConfig, EnvironmentConfig, Settings
from bot.errors import Denied, HandlerError, OpsbotError, Refused, RetryableError, UsageError
from bot.invocation import Invocation
from bot.kube import KubeFactory
from bot.lazy import import_lazy_modules
from bot.locks import Lease, Locked, TargetLocks
from bot.logs import log_context
from bot.markup import code
from bot.metrics import EXECUTIONS, TRIGGERS
from bot.preview import SILENT as _SILENT
from bot.preview import Preview
from bot.records import StoreRecords
from bot.registry import HandlerContext, HandlerSpec, Records, Registry, Result
from bot.reporting import Button, ExecutionView, Notice, Reporter, StepView
from bot.runbooks.loader import Catalog, builtin_dir
from bot.runbooks.models import Runbook, Step
from bot.runbooks.params import coerce_params
from bot.runbooks.templating import evaluate, render_value
from bot.storable import unstorable_trigger
from bot.store import AuditEntry, Store, StoreError
from bot.store.calls import store_call
from bot.trigger import Trigger

if TYPE_CHECKING:
    from bot.approvals.service import Approvals

__all__ = ["Dispatcher", "Outcome"]

log = logging.getLogger("opsbot.dispatcher")

OutcomeStatus = Literal[
    "succeeded", "failed", "refused", "denied", "usage", "duplicate", "info", "pending_approval",
    "queued", "cancelled",
]
REDACTED = "***"
# A queued trigger whose start the store could not record (busy, or briefly down) is tried
# again until this long after its ack, backing off; then it is left to the leader's recovery,
# which looks for triggers acked more than 30 s ago and never started (bot/slack/queue.py).
START_RETRY_FOR = 25.0
START_RETRY_FIRST = 0.25


@dataclass(frozen=True)
class Outcome:
    status: OutcomeStatus
    execution_id: str | None = None
    request_id: str | None = None


@dataclass
class _Run:
    """One execution in progress: what the steps see and what the reporter shows."""

    trigger: Trigger
    command: Command
    runbook: Runbook
    environment: EnvironmentConfig
    app: AppConfig | None
    params: dict[str, Any]
    view: ExecutionView
    reporter: Reporter
    template: dict[str, Any]
    last_progress: float = 0.0
    persist: bool = True  # False for a preview: nothing stored, nothing reported
    results: dict[int, tuple[Step, Result]] = field(default_factory=dict)
    lease: Lease | None = None  # the target lock, released before the end is reported
    changed: bool = False  # a mutating step has started (never in a dry run)
    refusal: Refused | None = None  # a step refused before any change: the run is refused
    cancelled_by: str | None = None  # `cancel <execution-id>` was read between steps


class Dispatcher:
    step_attempts = 3
    progress_interval = 1.0  # seconds between in-place progress updates (Slack rate limits)

    def __init__(
        self,
        *,
        settings: Settings,
        catalog: Catalog,
        registry: Registry,
        store: Store,
        access: Access,
        kube: KubeFactory,
        locks: TargetLocks | None = None,
        records: Records | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.registry = registry
        self.store = store
        self.access = access
        self.kube = kube
        self.locks = locks or TargetLocks(store, settings.handle)
        self.approvals: Approvals | None = None  # wired by Services
        self.records = records or StoreRecords(store)


    async def dispatch(self, trigger: Trigger, reporter: Reporter) -> Outcome:
        """Handle one trigger end to end; never raises for anything the user did."""
        refused = unstorable_trigger(trigger)
        if refused is not None:  # before the claim: the delivery key itself may be the fault
            return await self._reply(trigger, reporter, "usage",
                                     Notice("error", messages.unstorable_input(refused)))
        if trigger.queued and trigger.delivery_id:
            first = await self._start_queued(trigger, trigger.delivery_id)
            if first is None:
                return Outcome("queued")
            if not first:
                log.info("queued delivery %s already started elsewhere", trigger.delivery_id)
                return Outcome("duplicate")
        elif trigger.delivery_id:
            try:
                first = await store_call(self.store.deadline, self.store.claim_delivery,
                                         trigger.delivery_id)
            except (StoreError, TimeoutError) as exc:
                # Nothing may run unrecorded; the asker hears at once instead of waiting on it.
                log.error("delivery %s not claimed, nothing ran: the store failed (%s)",
                          trigger.delivery_id, type(exc).__name__)
                return await self._reply(trigger, reporter, "failed",
                                         Notice("error", messages.command_not_recorded()))
            if not first:
                log.info("duplicate delivery %s ignored", trigger.delivery_id)
                TRIGGERS.labels(source=trigger.source, outcome="duplicate").inc()
                return Outcome("duplicate")
        try:
            command = parse(trigger.text, self.catalog)
            if command.meta in ("approve", "deny", "cancel", "pending"):
                return await self._decide(trigger, command, reporter)
            if command.meta in ("help", "runbooks"):
                return await self._reply(
                    trigger, reporter, "info", await self._meta(trigger, command)
                )
            return await self._runbook(trigger, command, reporter)
        except UsageError as exc:
            hint = exc.hint or messages.usage_hint_for_unknown()
            return await self._reply(
                trigger, reporter, "usage", Notice("error", str(exc), hint=hint)
            )
        except Denied as exc:
            await self._audit_decision(trigger, None, None, "denied", str(exc))
            return await self._reply(
                trigger, reporter, "denied",
                Notice("denied", str(exc), hint=exc.hint or messages.denied_hint()),
            )
        except Refused as exc:
            return await self._reply(
                trigger, reporter, "refused", Notice("refused", str(exc), hint=exc.hint)
            )
        except OpsbotError as exc:
            return await self._reply(trigger, reporter, "failed", Notice("error", str(exc)))

    async def _start_queued(self, trigger: Trigger, key: str) -> bool | None:
        """Mark the acked trigger started (True: ours to run; False: started elsewhere). A
        store that cannot record it now (busy, briefly unreachable) is asked again, backing
        off, while the command is fresh: the asker was told it is on its way. None when the
        store never answered: the trigger stays queued for the leader's recovery."""
        delay = START_RETRY_FIRST
        while True:
            try:
                return await store_call(self.store.deadline, self.store.start_trigger, key)
            except (StoreError, TimeoutError) as exc:
                waited = (datetime.now(UTC) - trigger.received_at).total_seconds()
                if waited + delay > START_RETRY_FOR:
                    log.error("queued delivery %s not started: the store failed (%s) for %.0f "
                              "s; it is left to recovery", key, type(exc).__name__, waited)
                    return None
                log.warning("queued delivery %s not started yet: the store failed (%s); "
                            "trying again in %.2f s", key, type(exc).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _reply(
        self, trigger: Trigger, reporter: Reporter, status: OutcomeStatus, notice: Notice
    ) -> Outcome:
        # Counted before the reply, so whoever saw the reply sees it in /metrics.
        TRIGGERS.labels(source=trigger.source, outcome=status).inc()
        await reporter.notice(notice)
        return Outcome(status)

    async def _decide(self, trigger: Trigger, command: Command, reporter: Reporter) -> Outcome:
        """approve / deny / cancel / pending: the approval flow's own commands."""
        if self.approvals is None:
            raise Refused(messages.approvals_unavailable())
        if command.meta == "pending":
            # Open requests show commands, people and plans: for those who hold some role.
            if not await self.access.roles_of(trigger.actor):
                raise Denied(messages.pending_needs_role(self.settings.handle(trigger.actor)))
            return await self._reply(trigger, reporter, "info", await self.approvals.pending())
        request_id = command.topic or ""
        if command.meta == "cancel" and request_id.startswith("ex-"):
            with log_context(execution_id=request_id):
                notice = await cancel_execution(trigger, request_id, store=self.store,
                                                access=self.access, settings=self.settings)
            return await self._reply(trigger, reporter, "info", notice)
        with log_context(request_id=request_id or None):
            if command.meta == "approve":
                outcome = await self.approvals.approve(trigger, request_id, reporter,
                                                       confirmed=command.confirmed)
            elif command.meta == "deny":
                outcome = await self.approvals.deny(trigger, request_id, command.reason or "",
                                                    reporter)
            else:
                outcome = await self.approvals.cancel(trigger, request_id, reporter)
        TRIGGERS.labels(source=trigger.source, outcome=outcome.status).inc()
        return outcome

    async def _meta(self, trigger: Trigger, command: Command) -> Notice:
        allowed = [
            rb for rb in self.catalog if await self.access.allowed_anywhere(trigger, rb.name)
        ]
        slash = self.settings.slack.command if trigger.source == "slack" else ""
        prefix = slash.strip()
        if command.meta == "runbooks":
            builtin = str(builtin_dir())
            return messages.runbook_list(
                [
                    (
                        rb,
                        "built-in"
                        if self.catalog.source(rb.name).startswith(builtin)
                        else self.catalog.source(rb.name),
                    )
                    for rb in allowed
                ]
            )
        if command.topic:
            match = self.catalog.match_verb(command.topic.split())
            if match and match[0] in allowed:
                return messages.help_topic(match[0], prefix)
            if match is None:
                from bot.errors import UnknownName
                from bot.names import closest

                raise UnknownName(
                    "command", command.topic, closest(command.topic, self.catalog.verbs())
                )
        default = self.settings.environment(None)
        if self.access.channel_accepts(trigger, default):
            return messages.help_overview(allowed, prefix)
        here = [e.name for e in self.settings.environments.values()
                if self.access.channel_accepts(trigger, e)]
        return messages.help_overview(allowed, prefix, here)

    async def _runbook(self, trigger: Trigger, command: Command, reporter: Reporter) -> Outcome:
        assert command.runbook is not None
        runbook = command.runbook
        environment = self.settings.environment(command.env)
        params = coerce_params(
            runbook, command.raw_params, settings=self.settings, environment=environment.name
        )
        app_name = params.get("app")
        app = self.settings.app(app_name, environment.name) if app_name else None
        target = app.name if app else None
        command = replace(command, text=_redact(command.text, params, runbook))
        inv = Invocation(trigger, command, runbook, environment, app, params)
        try:
            await self.access.check(trigger, runbook.name, environment)
        except Denied as exc:
            await self._audit_decision(
                trigger, environment.name, target, "denied", str(exc), runbook=runbook.name
            )
            return await self._reply(
                trigger, reporter, "denied",
                Notice("denied", str(exc), hint=exc.hint or messages.denied_hint()),
            )
        return await self._gate(inv, reporter)

    async def run_automatic(self, inv: Invocation, reporter: Reporter) -> Outcome:
        """A run nobody typed: an alert's (the routing built `inv` from the runbook's alert
        trigger, and the guardrails allowed it) or a schedule's (the configuration names it).
        That is its authorization, so no role is checked; the approval policy still applies."""
        try:
            return await self._gate(inv, reporter)
        except Refused as exc:
            return await self._reply(inv.trigger, reporter, "refused",
                                     Notice("refused", str(exc), hint=exc.hint))

    async def _gate(self, inv: Invocation, reporter: Reporter) -> Outcome:
        """The approval gate: execute now, or open an approval request, or break glass."""
        trigger, command, runbook, environment, app, _ = inv.parts()
        target = app.name if app else None
        needs_approval = self._needs_approval(trigger, runbook, environment)
        if command.emergency and not needs_approval:
            raise UsageError(messages.emergency_not_needed(runbook.name, environment.name))
        if needs_approval and not command.dry_run:
            if self.approvals is None:
                reason = messages.approval_unavailable(runbook.name, environment.name)
                await self._audit_decision(
                    trigger, environment.name, target, "refused", reason, runbook=runbook.name
                )
                raise Refused(reason, hint=messages.approval_unavailable_hint())
            if command.emergency:
                return await self.approvals.break_glass(inv, reporter)
            try:
                outcome = await self.approvals.request(inv, reporter)
            except Refused as exc:  # e.g. its plan refuses: nobody is asked to approve a no-op
                await self._audit_decision(
                    trigger, environment.name, target, "refused", str(exc), runbook=runbook.name
                )
                raise
            TRIGGERS.labels(source=trigger.source, outcome=outcome.status).inc()
            return outcome
        return await self.execute(inv, reporter)

    def _needs_approval(
        self, trigger: Trigger, runbook: Runbook, environment: EnvironmentConfig
    ) -> bool:
        """Mutating runbooks in an approval environment (or those the policy lists), except
        alert- or schedule-started runs of a runbook auto-approved for that environment."""
        if not (runbook.mutating and environment.requires_approval):
            return False
        patterns = environment.approval.runbooks
        if patterns is not None and not matches(runbook.name, patterns):
            return False
        automatic = trigger.source in ("alert", "schedule")
        return not (automatic and matches(environment.name, runbook.auto_approved_in))

    async def execute(
        self, inv: Invocation, reporter: Reporter, *, request_id: str | None = None
    ) -> Outcome:
        """Persist and run an authorized execution; reports every step through `reporter`."""
        trigger, command, runbook, environment, app, params = inv.parts()
        stored_params = {
            k: (REDACTED if runbook.parameters[k].secret else v) for k, v in params.items()
        }
        target = app.name if app else None
        execution_id = await asyncio.to_thread(
            self.store.create_execution,
            runbook=runbook.name,
            source=trigger.source,
            actor=trigger.actor,
            command=command.text,
            environment=environment.name,
            target=target,
            params=stored_params,
            dry_run=command.dry_run,
            channel=trigger.channel,
            request_id=request_id,
        )
        # Every record logged while it runs (worker threads included) names the execution.
        with log_context(execution_id=execution_id, request_id=request_id):
            log.info("runbook %s started in %s (%s, by %s)", runbook.name, environment.name,
                     trigger.source, trigger.actor)
            lease: Lease | None = None
            if runbook.mutating and target and not command.dry_run:
                try:
                    lease = await self.locks.acquire(environment.name, target,
                                                     execution_id=execution_id, actor=trigger.actor,
                                                     request_id=request_id)
                except Locked as exc:
                    await asyncio.to_thread(self.store.finish_execution, execution_id,
                                            status="refused", summary=str(exc)[:2000])
                    await self._audit(trigger, command, runbook, environment.name, target,
                                      "refused", execution_id, detail=str(exc)[:500])
                    return await self._reply(trigger, reporter, "refused",
                                             Notice("refused", str(exc), hint=exc.hint))
            try:
                return await self._execute(inv, reporter, execution_id, request_id, lease)
            finally:
                if lease is not None:  # a no-op when `_finish` released it already
                    await lease.release()

    async def _execute(
        self, inv: Invocation, reporter: Reporter, execution_id: str, request_id: str | None,
        lease: Lease | None = None,
    ) -> Outcome:
        trigger, command, runbook, environment, app, params = inv.parts()
        target = app.name if app else None
        await self._audit(
            trigger, command, runbook, environment.name, target, "started", execution_id,
            request_id=request_id,
        )
        view = ExecutionView(
            execution_id=execution_id,
            runbook=runbook.name,
            command=command.text,
            actor=self.settings.handle(trigger.actor),
            environment=environment.name,
            target=target,
            dry_run=command.dry_run,
            reason=command.reason,
            steps=[StepView(step.name) for step in runbook.steps],
            request_id=request_id,
        )
        run = _Run(
            trigger,
            command,
            runbook,
            environment,
            app,
            params,
            view,
            reporter,
            template=self._template(command, environment, app, params, view.actor, inv.context),
            lease=lease,
        )
        await reporter.execution(view)
        try:
            ok = await self._run_steps(run, runbook.steps, offset=0)
            if not ok and run.refusal is None and runbook.on_failure:
                if run.cancelled_by is not None:
                    run.template["failure"] = messages.cancelled_failure(
                        self.settings.handle(run.cancelled_by))
                else:
                    broken = next(s for s in view.steps if s.status == "failed")
                    run.template["failure"] = f"{broken.name}: {broken.summary}"
                ok_cleanup = await self._run_steps(
                    run, runbook.on_failure, offset=len(runbook.steps), on_failure=True
                )
                if not ok_cleanup:
                    log.warning("on_failure steps of %s failed too", execution_id)
        except asyncio.CancelledError:
            # Shutdown's grace ran out mid-step: the step is recorded and shown interrupted
            # (the store marks its row so when the execution ends interrupted).
            for step in view.steps:
                if step.status == "running":
                    step.status = "interrupted"
            view.status = "interrupted"
            view.summary = messages.interrupted_summary()
            await self._finish(run, "interrupted")
            raise
        if run.refusal is not None:
            # Nothing was changed: no on_failure steps, no follow-ups, a refusal to tell.
            view.status = "refused"
            view.summary = messages.refused_summary(str(run.refusal), run.refusal.hint)
            await self._finish(run, "refused")
            return Outcome("refused", execution_id=execution_id)
        if run.cancelled_by is not None:
            view.status = "cancelled"
            cleanup = [s for s in view.steps
                       if s.on_failure and s.status in ("succeeded", "not_checked", "failed")]
            view.summary = messages.cancelled_summary(self.settings.handle(run.cancelled_by),
                                                      cleanup)
            view.buttons = self._follow_ups(run, False)
            await self._finish(run, "cancelled")
            return Outcome("cancelled", execution_id=execution_id)
        view.status = "succeeded" if ok else "failed"
        failed = next((s for s in view.steps if s.status == "failed"), None)
        if ok:
            view.summary = messages.done_summary(command.dry_run, run.template["not_checked"])
        else:
            # The failure, then what the on_failure steps did about it ("rolled back").
            cleanup = [s for s in view.steps
                       if s.on_failure and s.status in ("succeeded", "not_checked", "failed")]
            view.summary = messages.failure_summary(failed, cleanup)
        view.buttons = self._follow_ups(run, ok)
        if ok and not command.dry_run and trigger.source in ("slack", "console"):
            view.checklist = checklists_for(runbook.name, environment, app).after
            view.requester = trigger.actor
        await self._finish(run, view.status)
        return Outcome("succeeded" if ok else "failed", execution_id=execution_id)

    def _template(self, command: Command, environment: EnvironmentConfig,
                  app: AppConfig | None, params: dict[str, Any], actor: str,
                  context: Mapping[str, Any]) -> dict[str, Any]:
        """What step templates see (documented in docs/runbooks.md)."""
        return {
            "alert": None,  # the alert that started the run; None for commands
            **context,
            "params": dict(params),
            "env": {
                "name": environment.name,
                "explicit": command.env is not None,  # named with --env, not the default
                "namespace": environment.namespace,
                "deploy": environment.deploy.model_dump(),
            },
            "app": app.model_dump() | {"workload": app.workload_name} if app else None,
            "steps": {},
            # `Step: what (why)` for each check a step could not make, for later steps' `when`
            "not_checked": [],
            "actor": actor,
            "dry_run": command.dry_run,
            "reason": command.reason,
        }

    async def preview(self, inv: Invocation) -> Preview:
        """Run the runbook as a dry run, recording and reporting nothing: the plan approvers
        see, and its digest, recomputed when approvals are complete."""
        trigger, command, runbook, environment, app, params = inv.parts()
        dry = replace(command, dry_run=True)
        view = ExecutionView(
            execution_id="preview", runbook=runbook.name, command=command.text,
            actor=self.settings.handle(trigger.actor), environment=environment.name,
            target=app.name if app else None, dry_run=True, reason=command.reason,
            steps=[StepView(step.name) for step in runbook.steps],
        )
        run = _Run(trigger, dry, runbook, environment, app, params, view, _SILENT,
                   template=self._template(dry, environment, app, params, view.actor,
                                           inv.context),
                   persist=False)
        ok = await self._run_steps(run, runbook.steps, offset=0)
        return Preview.of(view, ok, [
            (step, result, self.registry.get(step.handler))
            for step, result in run.results.values()
        ], refusal=run.refusal)

    async def _finish(self, run: _Run, status: str) -> None:
        view = run.view
        verdicts = "; ".join(s.summary for s in view.steps if s.summary)
        summary = view.summary or verdicts
        if status == "succeeded" and not view.dry_run and view.summary:
            summary = f"{verdicts}; {view.summary}"  # what the steps did, then what went unchecked
        await asyncio.to_thread(
            self.store.finish_execution, view.execution_id, status=status, summary=summary[:2000]
        )
        log.info("runbook %s ended %s", run.runbook.name, status)
        await self._audit(
            run.trigger,
            run.command,
            run.runbook,
            view.environment,
            view.target,
            status,
            view.execution_id,
            detail=summary[:500],
            request_id=view.request_id,
            made=_made(run),
        )
        EXECUTIONS.labels(runbook=run.runbook.name, status=status).inc()
        trigger_outcome = status if status in ("succeeded", "refused") else "failed"
        TRIGGERS.labels(source=run.trigger.source, outcome=trigger_outcome).inc()
        # Whoever reads "done" may send the next command at once: it must find the target free.
        if run.lease is not None:
            await run.lease.release()
        try:
            await run.reporter.execution(view)
        except Exception:  # the execution is recorded; a failed report must not hide it
            log.exception("reporting the end of %s failed", view.execution_id)

    async def _run_steps(
        self, run: _Run, steps: list[Step], *, offset: int, on_failure: bool = False
    ) -> bool:
        if on_failure:
            run.view.steps.extend(StepView(step.name, on_failure=True) for step in steps)
        for index, step in enumerate(steps, start=offset):
            view = run.view.steps[index]
            if not on_failure and await self._cancel_asked(run):
                for rest in run.view.steps[index:offset + len(steps)]:
                    rest.status = "skipped"
                return False
            if step.when and not evaluate(step.when, run.template):
                view.status = "skipped"
                continue
            view.status = "running"
            await self._persist(
                run,
                self.store.start_step,
                run.view.execution_id,
                index=index,
                name=step.name,
                handler=step.handler,
            )
            await self._report(run)
            began = run.changed
            spec = self.registry.get(step.handler)
            if spec is not None and spec.mutating and not run.command.dry_run:
                run.changed = True
            try:
                result, error = await self._call(run, step, view)
            except Refused as exc:
                if began or on_failure:  # a change began: its refusal is a failure like any
                    result, error = None, str(exc)
                else:
                    await self._refuse(run, index, view, exc)
                    return False
            if result is not None:
                view.status = "succeeded" if result.ok else "failed"
                if result.ok and result.not_checked:
                    view.status = "not_checked"
                    run.template["not_checked"].extend(
                        f"{step.name}: {what}" for what in result.not_checked)
                view.summary, view.fields, view.output = (
                    result.summary,
                    result.fields,
                    result.output,
                )
                view.attachments = result.attachments
                view.announcements = result.announcements
                run.results[index] = (step, result)
                run.template["steps"][step.id or str(index)] = {
                    "summary": result.summary,
                    "ok": result.ok,
                    "not_checked": list(result.not_checked),
                    "data": result.data,
                }
            else:
                view.status, view.summary = "failed", error
            await self._persist(
                run,
                self.store.finish_step,
                run.view.execution_id,
                index=index,
                status=view.status,
                summary=view.summary,
                output=view.output,
                error=None if result else error,
            )
            await self._report(run)
            if view.status == "failed":
                return False
        return True

    async def _cancel_asked(self, run: _Run) -> bool:
        """Between steps: has someone asked (on any replica) to cancel this execution? The
        flag is a column of its row (`cancel <execution-id>`); a store hiccup reads as no."""
        if not run.persist:
            return False
        try:
            who = await asyncio.to_thread(self.store.cancel_requested, run.view.execution_id)
        except StoreError:
            log.warning("could not read whether %s was cancelled; going on",
                        run.view.execution_id)
            return False
        if who is not None:
            run.cancelled_by = who
        return who is not None

    async def _call(self, run: _Run, step: Step, view: StepView) -> tuple[Result | None, str]:
        spec = self.registry.get(step.handler)
        if spec is None:  # the catalog was checked at load; a registry swapped since is a bug
            return None, f"unknown handler {code(step.handler)}"
        try:
            args = render_value(dict(step.with_), run.template)
            params = spec.params.model_validate(args)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            return None, f"bad argument {code(where)}: {err['msg']}"
        except HandlerError as exc:
            return None, str(exc)
        ctx = self._context(run, spec, view)
        # Handlers read the Kubernetes and Prometheus clients from the loop: imported first
        # in a thread (once per process), so the first run after a start holds no ack.
        await import_lazy_modules()
        for attempt in range(1, self.step_attempts + 1):
            try:
                return await spec.fn(ctx=ctx, params=params), ""
            except RetryableError as exc:
                if attempt == self.step_attempts:
                    return None, str(exc)
                view.progress = messages.retrying(attempt, self.step_attempts, str(exc))
                await self._report(run)
                await asyncio.sleep(exc.delay)
            except Refused:
                raise  # `_run_steps` tells a refusal from a failure
            except (HandlerError, UsageError) as exc:
                return None, str(exc)
            except OpsbotError as exc:
                return None, str(exc)
            except Exception:
                log.exception("handler %s crashed in %s", step.handler, run.view.execution_id)
                return None, messages.internal_error(run.view.execution_id)
        return None, "no attempt made"  # pragma: no cover - the loop always returns

    async def _refuse(self, run: _Run, index: int, view: StepView, refusal: Refused) -> None:
        """A step refused before anything was changed (a handler raises `Refused` only before
        it changes anything): the step and then the run end refused."""
        run.refusal = refusal
        view.status, view.summary = "refused", str(refusal)
        await self._persist(run, self.store.finish_step, run.view.execution_id, index=index,
                            status="refused", summary=view.summary, output=None, error=None)
        await self._report(run)

    def _context(self, run: _Run, spec: HandlerSpec, view: StepView) -> HandlerContext:
        async def progress(text: str) -> None:
            view.progress = text
            now = time.monotonic()
            if now - run.last_progress >= self.progress_interval:
                run.last_progress = now
                await self._report(run)

        return HandlerContext(
            settings=self.settings,
            environment=run.environment,
            app=run.app,
            kube=self.kube.for_context(run.environment.kube_context),
            dry_run=run.command.dry_run,
            actor=run.trigger.actor,
            execution_id=run.view.execution_id,
            log=logging.LoggerAdapter(
                logging.getLogger(f"opsbot.handler.{spec.name}"),
                {"execution_id": run.view.execution_id},
            ),
            progress=progress,
            records=self.records,
        )

    async def _persist(self, run: _Run, fn: Callable[..., Any], /, *args: Any,
                       **kwargs: Any) -> None:
        if run.persist:
            await asyncio.to_thread(fn, *args, **kwargs)

    async def _report(self, run: _Run) -> None:
        try:
            await run.reporter.execution(run.view)
        except Exception:  # a chat hiccup must not stop a half-done change
            log.exception("progress report for %s failed", run.view.execution_id)

    def _follow_ups(self, run: _Run, ok: bool) -> list[Button]:
        buttons = []
        if run.command.dry_run:
            # A plan's natural next step is to run it; outcome buttons would mislead.
            if ok:
                real = rebuilt(run.command.text, without="--dry-run")
                buttons.append(Button(messages.run_for_real_label(), real, style="primary"))
            return buttons
        for follow in run.runbook.follow_up:
            if follow.when == "always" or (follow.when == "succeeded") == ok:
                try:
                    text = rebuilt(str(render_value(follow.command, run.template)))
                except (HandlerError, ValueError):
                    # Usually data a step did not produce this time (no app behind a PVC).
                    log.info(
                        "follow-up `%s` of %s left out: it did not render", follow.label,
                        run.runbook.name,
                    )
                    continue
                if text:  # a template may leave the button out by rendering empty
                    buttons.append(Button(follow.label, text))
        return buttons

    async def _audit(
        self,
        trigger: Trigger,
        command: Command,
        runbook: Runbook,
        environment: str,
        target: str | None,
        outcome: str,
        execution_id: str | None,
        detail: str = "",
        made: list[dict[str, Any]] | None = None,
        request_id: str | None = None,
    ) -> None:
        entry = AuditEntry(
            actor=trigger.actor,
            source=trigger.source,
            command=command.text,
            environment=environment,
            target=target,
            outcome=outcome,
            execution_id=execution_id,
            request_id=request_id,
            details={
                "runbook": runbook.name,
                "dry_run": command.dry_run,
                "reason": command.reason,
                "via": trigger.via,
                "detail": detail,
                # The revisions this execution's changes made (a rollout, an automatic
                # rollback, a restart): `history` reads them to say who made what.
                **({"made": made} if made else {}),
            },
        )
        await asyncio.to_thread(self.store.audit, entry)

    async def _audit_decision(
        self,
        trigger: Trigger,
        environment: str | None,
        target: str | None,
        outcome: str,
        detail: str,
        *,
        runbook: str | None = None,
    ) -> None:
        entry = AuditEntry(
            actor=trigger.actor,
            source=trigger.source,
            command=trigger.text[:500],
            environment=environment,
            target=target,
            outcome=outcome,
            details={"runbook": runbook, "via": trigger.via, "detail": detail},
        )
        await asyncio.to_thread(self.store.audit, entry)


def _made(run: _Run) -> list[dict[str, Any]]:
    """Which revision of which object each step's change made, for the audit record (its
    execution_id says which execution); a dry run makes none, whatever a handler says."""
    if run.command.dry_run:
        return []
    on_failure_from = len(run.runbook.steps)
    return [
        {"step": step.id or str(index), "kind": made.kind, "name": made.name,
         "revision": made.revision, **({"on_failure": True} if index >= on_failure_from else {})}
        for index, (step, result) in sorted(run.results.items())
        for made in result.made
    ]


def _redact(text: str, params: dict[str, Any], runbook: Runbook) -> str:
    for name, spec in runbook.parameters.items():
        value = params.get(name)
        if spec.secret and isinstance(value, str) and value:
            text = text.replace(value, REDACTED)
    return text
