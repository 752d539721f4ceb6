"""Turns stored Alertmanager notifications into alert-group messages and guarded runs.

The store is the queue: the intake commits a notification and wakes this worker; the worker
takes unprocessed notifications in arrival order (also after a restart, and on a timer, so
nothing waits on a lost wake-up). Processing is idempotent: alert states and decisions are
claimed in the store, so processing a notification twice (a crash between the two) starts
nothing twice, and a redelivery or repeat of an alert state starts nothing new.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from bot import messages
from bot.alerts.payload import AlertItem, Notification
from bot.alerts.routing import Route, alert_context, route
from bot.alerts.silences import covers, marks
from bot.alerts.view import AlertBoard, AlertGroupView, AlertLine, RunLine
from bot.commands import Command, rebuilt
from bot.config import Settings
from bot.dispatcher import Dispatcher
from bot.errors import OpsbotError
from bot.invocation import Invocation
from bot.markup import code
from bot.metrics import ALERT_DECISIONS
from bot.numbers import parse_duration
from bot.pacing import Foreground
from bot.preview import SILENT
from bot.reporting import Button, ExecutionView, Notice, Reporter
from bot.runbooks.loader import Catalog
from bot.runbooks.templating import render_value
from bot.store import AuditEntry, SilenceRecord, Store, StoreError
from bot.store.alerts import (
    AlertGroupRecord,
    AlertRunRecord,
    DecisionAsked,
    GroupUpdate,
    Guardrails,
    StoredNotification,
)
from bot.store.alerts import group_hash as hash_of_group
from bot.trigger import Trigger

__all__ = ["ALERT_ACTOR", "AlertProcessor"]

log = logging.getLogger("opsbot.alerts")

#: Who automatic runs are recorded as (executions, audit, messages).
ALERT_ACTOR = "alertmanager"
_META = "_meta"
_MAX_BUTTONS = 10
#: Notifications claimed at a time; how many are processed as one batch, while no request is
#: in flight and while requests come.
CLAIM = 50
STEP = 25
BUSY_STEP = 5


class AlertProcessor:
    def __init__(self, *, settings: Settings, store: Store, catalog: Catalog,
                 dispatcher: Dispatcher, board: AlertBoard,
                 foreground: Foreground | None = None) -> None:
        self.settings = settings
        # The intake's requests go first: each notification is processed once none waits.
        self.foreground = foreground or Foreground()
        self.store = store
        self.catalog = catalog
        self.dispatcher = dispatcher
        self.board = board
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._runs: set[asyncio.Task[None]] = set()
        self._group_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._drain_lock = asyncio.Lock()


    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Work through the stored backlog, then whatever arrives."""
        if self._worker is None:
            self._worker = asyncio.create_task(self._loop(), name="opsbot-alerts")

    def wake(self) -> None:
        """A notification was committed: process it soon."""
        self._wake.set()

    async def stop(self, grace: float = 20.0) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
        if self._runs:
            _, pending = await asyncio.wait(set(self._runs), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def wait_idle(self) -> None:
        """Process every stored notification and wait for the runs they started (tests)."""
        while True:
            await self.drain()
            if not self._runs:
                return
            await asyncio.gather(*set(self._runs), return_exceptions=True)

    async def recover(self, stale_after: timedelta | None = None) -> None:
        """Runs that were deciding or running when their replica stopped are marked
        interrupted and shown so; they are never started again. With `stale_after`, only runs
        of replicas whose heartbeat is older (and this process's own earlier runs); without,
        every active run (one process alone on its database)."""
        for run in await asyncio.to_thread(self.store.interrupt_alert_runs,
                                           stale_after=stale_after):
            log.warning("automatic run %s of %s was interrupted by a restart", run.id, run.runbook)
            await self.show(run.group_hash)

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.drain()
            except asyncio.CancelledError:
                raise
            except Exception:  # the store is down: the notifications wait on disk
                log.exception("processing alert notifications failed; retrying")
            # The timer's poll (for what other replicas or a failed round left) waits until no
            # request does, 2 s at most; a notification received is taken at once.
            await self.foreground.wait_woken(self._wake, self.settings.alerts.poll_seconds)

    async def drain(self) -> int:
        async with self._drain_lock:
            done = 0
            while claimed := await asyncio.to_thread(self.store.claim_notifications, CLAIM):
                while claimed:
                    # Deferred at most `max_defer_s` after the oldest arrived, not after each
                    # wait: under a steady intake, processing lags by that much and keeps its
                    # pace. Then small batches while requests come (their answers wait for
                    # the loop less), larger ones once none does.
                    age = (datetime.now(UTC) - claimed[0].received_at).total_seconds()
                    await self.foreground.wait_quiet(time.monotonic() - max(0.0, age))
                    step = STEP if self.foreground.quiet() else BUSY_STEP
                    batch, claimed = claimed[:step], claimed[step:]
                    await self._process_safely(batch)
                    done += len(batch)
            return done

    async def _process_safely(self, batch: Sequence[StoredNotification]) -> None:
        try:
            await self.process(batch)
        except StoreError:
            raise  # transient: stays unprocessed, retried by the loop
        except Exception:
            if len(batch) > 1:
                # Processing is idempotent: each notification again alone finds the one that
                # breaks it, and the others are processed as they would have been.
                log.debug("a batch of %d notifications failed; one at a time", len(batch),
                          exc_info=True)
                for stored in batch:
                    await self._process_safely([stored])
                return
            # A notification that breaks processing must not block the ones behind it.
            log.exception("notification %s could not be processed; skipped", batch[0].id)
            await asyncio.to_thread(self.store.mark_notifications_processed, [batch[0].id])

    # -- notifications ----------------------------------------------------------------------

    async def process(self, batch: Sequence[StoredNotification]) -> None:
        """Process `batch` (in arrival order) as one: each step is one store call for all of
        it, and each group's message is shown once, as the batch leaves it."""
        read = [_read(stored, self.catalog, self.settings) for stored in batch]
        notified = [r for r in read if r is not None]
        owned = await asyncio.to_thread(
            self.store.claim_alert_states_for,
            [(r.stored.id, [alert.state_key for alert, _, _ in r.alerts]) for r in notified])
        if notified:
            await asyncio.to_thread(self.store.update_alert_groups, [
                GroupUpdate(group_key=r.notification.group_key,
                            receiver=r.notification.receiver, alerts=r.snapshot)
                for r in notified])
        new_firing: list[tuple[_Read, AlertItem, dict[str, Any], list[Route]]] = []
        new_resolved: defaultdict[str, set[str]] = defaultdict(set)
        for r in notified:
            for alert, context, routes in r.alerts:
                if alert.state_key not in owned[r.stored.id]:
                    continue
                if alert.status == "firing":
                    new_firing.append((r, alert, context, routes))
                else:
                    new_resolved[r.group_hash].add(alert.fingerprint)
        if new_resolved:
            await self._withdraw_requests(new_resolved)
        allowed = await self._decide(new_firing)
        # The groups' messages first, so the runs report in their threads.
        await self.show(*dict.fromkeys(r.group_hash for r in notified))
        for run, matched, context in allowed:
            task = asyncio.create_task(self._execute(run, matched, context, run.group_hash),
                                       name=f"opsbot-alert-run-{run.id}")
            self._runs.add(task)
            task.add_done_callback(self._runs.discard)
        await asyncio.to_thread(self.store.mark_notifications_processed,
                                [stored.id for stored in batch])

    async def _withdraw_requests(self, resolved: dict[str, set[str]]) -> None:
        """Alerts resolved (fingerprints by group): the approval requests their runs still
        wait on are cancelled (nobody should approve a remedy for a problem that went
        away)."""
        approvals = self.dispatcher.approvals
        if approvals is None:
            return
        groups = await asyncio.to_thread(self.store.alert_groups_with_runs, resolved)
        for group_hash, (_, runs) in groups.items():
            for run in runs:
                if run.fingerprint not in resolved[group_hash] \
                        or run.status != "awaiting_approval" or not run.request_id:
                    continue
                trigger = Trigger(source="alert", actor=ALERT_ACTOR,
                                  text=f"cancel {run.request_id}", via="alert")
                try:
                    await approvals.cancel(trigger, run.request_id, SILENT)
                except OpsbotError as exc:  # decided meanwhile: it stays as it is
                    log.info("request %s not withdrawn: %s", run.request_id, exc)
                    continue
                await asyncio.to_thread(self.store.alert_run_not_started, run.id,
                                        request_id=run.request_id, status="cancelled")

    async def _decide(self, firing: list[tuple[_Read, AlertItem, dict[str, Any], list[Route]]],
                      ) -> list[tuple[AlertRunRecord, Route, dict[str, Any]]]:
        """Take the guardrail decisions on the routes of new firing alerts, in order, with
        their audit entries; the runs to start."""
        asked: list[DecisionAsked] = []
        routed: list[tuple[Route, dict[str, Any]]] = []
        for r, alert, context, routes in firing:
            for matched in routes:
                asked.append(self._asked(r, alert, matched))
                routed.append((matched, context))
        if not asked:
            return []
        decided = await asyncio.to_thread(self.store.decide_alert_runs, asked)
        allowed = []
        for run, (matched, context) in zip(decided, routed, strict=True):
            if not run.created:
                continue  # decided by an earlier processing of this notification
            ALERT_DECISIONS.labels(decision=run.decision).inc()
            if run.decision in ("run", "shadow"):
                allowed.append((run, matched, context))
        return allowed

    def _asked(self, r: _Read, alert: AlertItem, matched: Route) -> DecisionAsked:
        runbook, trigger = matched.runbook, matched.trigger
        limits = None
        if matched.params is not None:
            limits = Guardrails(
                cooldown=parse_duration(trigger.cooldown),
                max_runs=trigger.max_runs,
                window=parse_duration(trigger.window),
                max_concurrent=self.settings.alerts.max_concurrent,
                shadow=matched.mode == "shadow",
            )

        def audit(run: AlertRunRecord) -> AuditEntry:
            return AuditEntry(
                actor=ALERT_ACTOR, source="alert",
                command=f"{alert.name} -> {run.runbook}"[:500], environment=run.environment,
                target=run.target, outcome=f"automation_{run.decision}",
                details={"runbook": run.runbook, "decision": run.decision,
                         "detail": run.detail, "fingerprint": alert.fingerprint,
                         "starts_at": alert.starts_at.isoformat(), "group": r.group_hash,
                         "run": run.id},
            )

        return DecisionAsked(
            state_key=alert.state_key, group_key=r.notification.group_key,
            fingerprint=alert.fingerprint, alertname=alert.name, runbook=runbook.name,
            environment=matched.environment.name if matched.environment else None,
            target=matched.subject if matched.params is not None else None,
            mutating=runbook.mutating, guardrails=limits, problem=matched.problem, audit=audit,
        )

    async def _execute(self, run: AlertRunRecord, matched: Route, context: dict[str, Any],
                       group_hash: str) -> None:
        assert matched.environment is not None and matched.params is not None
        runbook, environment = matched.runbook, matched.environment
        dry_run = run.decision == "shadow"
        text = _command_text(runbook.name, matched.params, environment.name, dry_run)
        trigger = Trigger(source="alert", actor=ALERT_ACTOR, text=text,
                          channel=self.settings.alerts.channel, via="alert")
        command = Command(text=text, meta="run", runbook=runbook, env=environment.name,
                          dry_run=dry_run,
                          reason=f"alert {context['name']} ({run.fingerprint[:12]})")
        inv = Invocation(trigger, command, runbook, environment, matched.app,
                         dict(matched.params), context={"alert": context})

        async def started(execution_id: str) -> None:
            await asyncio.to_thread(self.store.start_alert_run, run.id, execution_id)
            await self.show(group_hash)

        view = await self._view(group_hash)
        reporter = _RunReporter(self.board.reporter(view) if view else SILENT, started)
        try:
            outcome = await self.dispatcher.run_automatic(inv, reporter)
        except Exception:
            log.exception("automatic run %s of %s failed to run", run.id, runbook.name)
            outcome = None
        if outcome is not None and outcome.status == "pending_approval":
            await asyncio.to_thread(self.store.alert_run_not_started, run.id,
                                    request_id=outcome.request_id, status="awaiting_approval")
        elif outcome is None or outcome.execution_id is None:
            await asyncio.to_thread(self.store.alert_run_not_started, run.id, request_id=None,
                                    status="refused")
        else:
            opened = await asyncio.to_thread(self.store.finish_alert_run, run.id, outcome.status,
                                             breaker_limit=self.settings.alerts.breaker_failures)
            if opened is not None:
                await self._breaker_opened(group_hash, opened.environment, opened.target,
                                           opened.failures)
        await self.show(group_hash)

    async def _breaker_opened(self, group_hash: str, environment: str, target: str,
                              failures: int) -> None:
        text = (f"🛑 Automation stopped for {target} in {environment}: {failures} automatic "
                "remediations failed in a row. A human needs to take over; "
                f"{code(f'automation resume --env {environment}')} turns it back on.")
        log.warning("circuit breaker opened for %s/%s after %d failures", environment, target,
                    failures)
        await asyncio.to_thread(self.store.audit, AuditEntry(
            actor=ALERT_ACTOR, source="alert", command=f"circuit breaker {environment}/{target}",
            environment=environment, target=target, outcome="breaker_opened",
            details={"failures": failures, "group": group_hash},
        ))
        view = await self._view(group_hash)
        if view is not None:
            try:
                await self.board.announce(view, text)
            except Exception:
                log.exception("announcing the open circuit breaker failed")

    # -- the group message ------------------------------------------------------------------

    async def show(self, *group_hashes: str) -> None:
        """Render the groups from the store and post or update their messages (one at a time
        per group, so updates never overtake each other)."""
        async with contextlib.AsyncExitStack() as held:
            for group_hash in sorted(set(group_hashes)):  # one order: no two wait on each other
                await held.enter_async_context(self._group_locks[group_hash])
            views = await self._views(group_hashes)
            if not views:
                return
            try:
                await self.board.show(*views)
            except Exception:
                log.exception("showing %s failed", ", ".join(
                    f"alert group {view.group_hash[:12]}" for view in views))

    async def _view(self, group_hash: str) -> AlertGroupView | None:
        views = await self._views([group_hash])
        return views[0] if views else None

    async def _views(self, group_hashes: Collection[str]) -> list[AlertGroupView]:
        """The views of the groups that exist, in the order asked."""
        if not group_hashes:
            return []
        found = await asyncio.to_thread(self.store.alert_groups_with_runs, group_hashes)
        if not found:
            return []
        silences = await asyncio.to_thread(self.store.recent_silences)
        now = datetime.now(UTC)
        return [self._group_view(*found[h], silences, now) for h in group_hashes if h in found]

    def _group_view(self, group: AlertGroupRecord, runs: list[AlertRunRecord],
                    silences: list[SilenceRecord], now: datetime) -> AlertGroupView:
        meta = group.alerts.get(_META, {})
        states = [state for key, state in group.alerts.items() if key != _META]
        states.sort(key=lambda s: (s["status"] != "firing", s["starts_at"], s["fingerprint"]))
        names = sorted({s["name"] for s in states}) or ["alerts"]
        title = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        envs = sorted({s["env"] for s in states if s.get("env")})
        if envs:
            title += f" in {', '.join(envs)}"
        notes = []
        if meta.get("truncated"):
            notes.append(f"Alertmanager left {meta['truncated']} more alerts of this group out "
                         "of the notification (its max_alerts).")
        silenced = marks(silences, states, self.settings.handle, now)
        notes += silenced.notes
        links = _group_links(states)
        if links:
            notes.append(messages.alert_links(links))
        return AlertGroupView(
            group_hash=group.group_hash, title=title, status=group.status,
            alerts=[AlertLine(s["fingerprint"], s["name"], s["status"], s["severity"],
                              s["summary"], s["where"], s["starts_at"], s.get("ends_at"))
                    for s in states],
            runs=[RunLine(r.runbook, r.alertname, r.target, r.environment, r.decision,
                          r.detail, r.status, r.execution_id, r.request_id) for r in runs],
            buttons=(self._buttons(states, silenced.silenced) + silenced.buttons)[:_MAX_BUTTONS],
            notes=notes,
            channel=group.channel, ts=group.message_ts,
        )

    async def silence_changed(self, matchers: dict[str, str]) -> None:
        """A silence opsbot made or expired: re-show the recent alert messages it covers."""
        groups = await asyncio.to_thread(self.store.recent_alert_groups)
        for group in groups:
            states = [s for key, s in group.alerts.items() if key != _META]
            if any(covers(matchers, s.get("labels") or {}) for s in states):
                await self.show(group.group_hash)

    def _buttons(self, states: list[dict[str, Any]], silenced: set[str]) -> list[Button]:
        buttons: list[Button] = []
        firing = [s for s in states if s["status"] == "firing"]
        for state in firing:
            if state.get("app") and state.get("env"):
                buttons.append(Button(f"Diagnose {state['app']}",
                                      f"diag {state['app']} --env {state['env']}"))
        for state in firing:
            buttons += [Button(label, command) for label, command in state.get("suggest", [])]
        if firing and firing[0].get("env") and firing[0]["fingerprint"] not in silenced:
            # Once silenced, the message shows the silence and its Expire button instead.
            first = firing[0]
            labels = {k: v for k, v in first["labels"].items() if k in _SILENCE_LABELS}
            words = " ".join(shlex.quote(f"{k}={v}") for k, v in sorted(labels.items()))
            for duration in self.settings.alerts.silence_durations:
                buttons.append(Button(
                    f"Silence {duration}",
                    f"silence {shlex.quote(first['name'])} {words} --for {duration} "
                    f"--env {first['env']}".replace("  ", " "),
                ))
        unique = list({button.command: button for button in buttons}.values())
        return unique[:_MAX_BUTTONS]


@dataclass(frozen=True)
class _Read:
    """A stored notification as processing reads it: its alerts (each with its context and
    the routes it matched) and the states it notifies its group of."""

    stored: StoredNotification
    notification: Notification
    group_hash: str
    snapshot: dict[str, Any]
    alerts: list[tuple[AlertItem, dict[str, Any], list[Route]]]


def _read(stored: StoredNotification, catalog: Catalog, settings: Settings) -> _Read | None:
    """None for a stored payload that is not a notification (logged; it is marked processed
    with the rest)."""
    try:
        notification = Notification.model_validate(stored.payload)
    except ValidationError:
        log.error("stored notification %s is not readable; skipped", stored.id)
        return None
    received = stored.received_at.isoformat()
    snapshot: dict[str, Any] = {_META: {
        "group_labels": dict(notification.group_labels),
        "truncated": notification.truncated_alerts,
        "notified_at": received,
    }}
    alerts: list[tuple[AlertItem, dict[str, Any], list[Route]]] = []
    for alert in notification.alerts:
        context = alert_context(alert, settings)
        routes = route(alert, catalog, settings) if alert.status == "firing" else []
        snapshot[alert.fingerprint] = _alert_state(alert, context, routes, received)
        alerts.append((alert, context, routes))
    return _Read(stored, notification, hash_of_group(notification.group_key), snapshot,
                 alerts)


def _group_links(states: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The first firing alert's links (else the first alert's): its app's Grafana dashboard
    from before it began, its Prometheus expression, its runbook."""
    ordered = [s for s in states if s["status"] == "firing"] + states
    for state in ordered:
        links = state.get("links") or {}
        if links:
            return [(messages.ALERT_LINK_LABELS[k], links[k])
                    for k in ("grafana", "prometheus", "runbook") if links.get(k)]
    return []


# Labels a Silence button carries over from the alert: enough to silence this incident, not
# every alert of the same name.
_SILENCE_LABELS = ("namespace", "deployment", "statefulset", "pod", "container", "job_name",
                   "persistentvolumeclaim", "ingress", "service", "horizontalpodautoscaler")


def _alert_state(alert: AlertItem, context: dict[str, Any], routes: list[Route],
                 received: str) -> dict[str, Any]:
    where_parts = []
    if context["app"]:
        where_parts.append(context["app"])
    elif context["pod"]:
        where_parts.append(f"pod {context['pod']}")
    if context["env"]:
        where_parts.append(f"in {context['env']}")
    elif context["namespace"]:
        where_parts.append(f"in namespace {context['namespace']}")
    suggestions = []
    for matched in routes:
        for suggestion in matched.trigger.suggest:
            values = {"alert": context, "params": matched.params or {},
                      "env": {"name": context["env"]}}
            try:
                command = rebuilt(str(render_value(suggestion.command, values)))
                label = str(render_value(suggestion.label, values)).strip()
            except (OpsbotError, ValueError):
                continue
            if command and label:
                suggestions.append([label, command])
    ends = alert.ends_at.isoformat() if alert.ends_at and alert.ends_at.year > 1 else None
    return {
        "fingerprint": alert.fingerprint, "name": alert.name or "unnamed alert",
        "status": alert.status, "severity": context["severity"],
        "summary": context["summary"][:300], "where": " ".join(where_parts),
        "starts_at": alert.starts_at.isoformat(), "ends_at": ends,
        "labels": dict(alert.labels), "env": context["env"], "app": context["app"],
        "suggest": suggestions, "notified_at": received,
        # Checked links (http(s) only; Grafana's built from config, values URL-encoded).
        "links": {k: v for k, v in context["links"].items() if v},
    }


def _command_text(runbook: str, params: dict[str, Any], env: str, dry_run: bool) -> str:
    """A command a person could type for the same run (also what an approval re-runs)."""
    words = ["run", runbook]
    for name, value in params.items():
        if value is None or value == {}:
            continue
        if isinstance(value, dict):
            value = ",".join(f"{k}={v}" for k, v in value.items())
        elif isinstance(value, bool):
            value = "true" if value else "false"
        words.append(shlex.quote(f"{name}={value}"))
    words += ["--env", env]
    if dry_run:
        words.append("--dry-run")
    return " ".join(words)


class _RunReporter:
    """Forwards to the board's reporter; the first view carries the execution id."""

    def __init__(self, inner: Reporter,
                 started: Callable[[str], Any]) -> None:
        self._inner = inner
        self._started = started
        self._seen = False

    async def execution(self, view: ExecutionView) -> None:
        if not self._seen:
            self._seen = True
            await self._started(view.execution_id)
        await self._inner.execution(view)

    async def notice(self, notice: Notice) -> None:
        await self._inner.notice(notice)



