"""KubePodCrashLooping and OOM-killed containers: restarts, last termination, previous log,
when the crash loop began and whether with the Deployment's latest revision (the fact
`remediate-crashloop-rollback` acts on), and memory limits against the working set."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import Field, field_validator

from bot.errors import HandlerError
from bot.messages import rough_span
from bot.registry import HandlerContext, Result, handler
from handlers.incident import ago, diagnosis
from handlers.incidents.workload_common import (
    WorkloadAlertParams,
    check_window,
    container_spec,
    events_text,
    mebibytes,
    pick_pod,
    prometheus_value,
    resource,
    revision_of,
    selector,
    to_bytes,
)
from handlers.pods import (
    app_pods,
    container_status,
    event_time,
    owner_of,
    pod_events,
)
from handlers.workload import Workload, read_workload

__all__ = [
    "CrashFacts",
    "CrashParams",
    "OomParams",
    "crash_facts",
    "crashloop",
    "crashloop_rollback_check",
    "oom_killed",
    "termination_cause",
]

REVISION_HISTORY = "deployment.kubernetes.io/revision-history"


class CrashParams(WorkloadAlertParams):
    log_lines: int = Field(default=20, ge=1, le=200)
    rollout_window_minutes: int = Field(default=60, ge=1, le=1440)


@dataclass
class CrashFacts:
    """What a crash loop is and whether it began with the Deployment's latest revision."""

    pod: Any | None
    container: str | None
    note: str | None
    restarts: int = 0
    waiting: str | None = None
    last_reason: str | None = None
    last_exit: int | None = None
    started: datetime | None = None  # when the crash loop began
    revision: str | None = None  # the crashing pod's ReplicaSet revision
    current_revision: str | None = None
    previous_revision: str | None = None
    rollout_at: datetime | None = None
    image: str | None = None
    began_with_latest: bool = False
    revision_note: str = ""

    @property
    def crashing(self) -> bool:
        return self.pod is not None and self.restarts > 0 and self.last_reason is not None


async def crash_facts(ctx: HandlerContext, workload: Workload, params: CrashParams,
                      *, reason: str | None = None) -> CrashFacts:
    pods = await app_pods(ctx, workload)

    def score(pod: Any) -> int:
        status = container_status(pod, params.container)
        if status is None:
            return 0
        last = status.last_state.terminated if status.last_state else None
        if reason and (last is None or last.reason != reason):
            return 0
        return int(status.restart_count or 0)

    pod, note = pick_pod(pods, params.pod, score)
    if pod is None:
        return CrashFacts(None, params.container, note)
    statuses = (pod.status.container_statuses or []) if pod.status else []
    chosen = container_status(pod, params.container) if params.container else max(
        statuses, key=lambda s: int(s.restart_count or 0), default=None)
    facts = CrashFacts(pod, chosen.name if chosen else params.container, note)
    if chosen is None:
        return facts
    facts.restarts = int(chosen.restart_count or 0)
    facts.image = chosen.image
    facts.waiting = chosen.state.waiting.reason if chosen.state and chosen.state.waiting else None
    last = chosen.last_state.terminated if chosen.last_state else None
    if last is not None:
        facts.last_reason, facts.last_exit = last.reason, last.exit_code
    events = await pod_events(ctx, pod.metadata.name, limit=50)
    backoffs = [e.first_timestamp or event_time(e) for e in events
                if e.reason == "BackOff" and f"container {facts.container}" in (e.message or "")]
    if backoffs:
        facts.started = min(backoffs)
    elif facts.restarts and pod.status and pod.status.start_time:
        facts.started = pod.status.start_time
    await _revision_facts(ctx, workload, pods, pod, facts, params.rollout_window_minutes)
    return facts


async def _revision_facts(ctx: HandlerContext, workload: Workload, pods: list[Any], pod: Any,
                          facts: CrashFacts, window_minutes: int) -> None:
    facts.current_revision = workload.revision
    revision = await revision_of(ctx, workload, await owner_of(ctx, pod, workload))
    rs = revision.replica_set
    if rs is None:
        facts.revision_note = revision.text
        return
    annotations = rs.metadata.annotations or {}
    facts.revision, facts.previous_revision = revision.number, revision.previous
    facts.rollout_at = rs.metadata.creation_timestamp
    if annotations.get(REVISION_HISTORY):
        # A ReplicaSet reused by a rollback: its pods were created when it came back.
        mine = [p.metadata.creation_timestamp for p in pods
                if any(r.name == rs.metadata.name for r in p.metadata.owner_references or [])]
        facts.rollout_at = min(mine, default=facts.rollout_at)
    if not revision.latest:
        facts.revision_note = (f"the pod runs revision {facts.revision}, not the latest "
                               f"({facts.current_revision})")
        return
    if facts.previous_revision is None:
        facts.revision_note = (f"revision {facts.revision} is {workload.name}'s only one: "
                               "there is nothing to roll back to")
        return
    if facts.started is None or facts.rollout_at is None:
        facts.revision_note = "when the crash loop began is unknown"
        return
    delay = facts.started - facts.rollout_at
    when = ago(facts.rollout_at)
    if delay <= timedelta(minutes=window_minutes):
        facts.began_with_latest = True
        facts.revision_note = (f"the crash loop began {rough_span(delay)} after revision "
                               f"{facts.revision} ({facts.image}) rolled out at {when}")
    else:
        facts.revision_note = (f"the crash loop began {rough_span(delay)} after revision "
                               f"{facts.revision} rolled out at {when}, so not with it")


def termination_cause(reason: str | None, exit_code: int | None,
                      memory_limit: str | None) -> str:
    if reason == "OOMKilled":
        if not memory_limit:
            return "it runs out of memory: it has no limit, so the node ran out"
        return f"it runs out of memory: killed at its memory limit of {memory_limit}"
    if exit_code == 137:
        return "it is killed (SIGKILL, exit 137): often a failing liveness probe"
    if exit_code == 143:
        return "it is stopped (SIGTERM, exit 143): often a failing liveness probe"
    if exit_code == 139:
        return "it crashes with a segmentation fault (exit 139)"
    if exit_code in (126, 127):
        return f"its command cannot be run (exit {exit_code}): a wrong command or image"
    if exit_code == 0 or reason == "Completed":
        return "its process exits successfully, but a long-running container must not exit"
    if reason in ("ContainerCannotRun", "StartError"):
        return "the container cannot start (see its last termination message)"
    return f"the application exits with an error (exit {exit_code}); see its previous log"


async def _previous_log(ctx: HandlerContext, pod: str, container: str, lines: int) -> str:
    try:
        text = await ctx.kube.call(ctx.kube.core.read_namespaced_pod_log, pod, ctx.namespace,
                                   container=container, previous=True, tail_lines=lines)
    except HandlerError as exc:
        return f"(previous log unavailable: {exc})"
    return str(text).rstrip()


@handler("incident.crashloop", params=CrashParams)
async def crashloop(*, ctx: HandlerContext, params: CrashParams, **_: object) -> Result:
    """KubePodCrashLooping: restarts, last termination, previous log, when it began and with
    which revision."""
    workload = await read_workload(ctx)
    facts = await crash_facts(ctx, workload, params)
    if not facts.crashing:
        return diagnosis(
            what=f"no container of {workload.name} is crash-looping now",
            cause="the crash loop stopped or its pod was replaced" + (
                f" ({facts.note})" if facts.note else ""),
            alert=params.alert, data={"crashing": False, "suggest": None})
    pod: Any = facts.pod
    container = facts.container or "?"
    limit = resource(container_spec(pod, container), "limits", "memory")
    cause = termination_cause(facts.last_reason, facts.last_exit, limit)
    suggest = "rollback" if facts.began_with_latest else "restart"
    if facts.began_with_latest:
        cause = f"revision {facts.revision} ({facts.image}): {cause}"
        advice = (f"Rollback to revision {facts.previous_revision}: the crash loop began with "
                  f"revision {facts.revision}")
    else:
        advice = f"Restart, not Rollback: {facts.revision_note or 'no rollout to blame'}"
    log = await _previous_log(ctx, pod.metadata.name, container, params.log_lines)
    last_line = next((line for line in reversed(log.splitlines()) if line.strip()), "")
    events = await pod_events(ctx, pod.metadata.name)
    evidence = [
        ("Pod", f"{pod.metadata.name} ({container})" + (f"; {facts.note}" if facts.note else "")),
        ("Restarts", str(facts.restarts)),
        ("Last termination", f"{facts.last_reason} (exit code {facts.last_exit})"),
        ("Revision", facts.revision_note or "unknown"),
        ("Suggested", advice),
    ]
    if last_line:
        evidence.append(("Last log line", last_line[-300:]))
    output = "\n".join([f"PREVIOUS LOG {pod.metadata.name}/{container} (last lines)",
                        *(f"  {line}" for line in log.splitlines()), "", "EVENTS",
                        *events_text(events)])
    return diagnosis(
        what=(f"{container} in pod {pod.metadata.name} is crash-looping: {facts.restarts} "
              f"restarts, last {facts.last_reason} (exit {facts.last_exit})"),
        cause=cause, alert=params.alert, since=facts.started, evidence=evidence, output=output,
        data={"crashing": True, "pod": pod.metadata.name, "container": container,
              "restarts": facts.restarts, "reason": facts.last_reason,
              "exit_code": facts.last_exit, "revision": facts.revision,
              "previous_revision": facts.previous_revision,
              "began_with_latest_revision": facts.began_with_latest, "suggest": suggest,
              # The one follow-up button the facts support (a missing key leaves it out).
              f"{suggest}_app": ctx.require_app().name})


@handler("incident.crashloop_rollback_check", params=CrashParams)
async def crashloop_rollback_check(*, ctx: HandlerContext, params: CrashParams,
                                   **_: object) -> Result:
    """Decide whether a crash loop calls for a rollback: only when it began with the latest
    revision of the Deployment and there is an earlier one."""
    app = ctx.require_app()
    workload = await read_workload(ctx)
    facts = await crash_facts(ctx, workload, params)
    why: str
    if app.deploy.strategy == "argo-rollouts" or workload.kind != "Deployment":
        act, why = False, f"{app.name} is not a Deployment rolled out directly"
    elif workload.obj.spec.paused:
        act, why = False, f"{workload.name} is paused; a rollback would not roll out"
    elif not facts.crashing:
        act, why = False, f"no container of {workload.name} is crash-looping now"
    else:
        act, why = facts.began_with_latest, facts.revision_note
    verb = "would roll back" if ctx.dry_run else "rolling back"
    summary = (f"{verb} {app.name} to revision {facts.previous_revision}: {why}" if act
               else f"not rolling back {app.name}: {why}")
    fields = [("Decision", "roll back" if act else "no action"), ("Why", why)]
    if facts.pod is not None:
        fields.append(("Pod", f"{facts.pod.metadata.name}: {facts.restarts} restarts, last "
                              f"{facts.last_reason}"))
    return Result(summary=summary, fields=tuple(fields), data={
        "act": act, "why": why, "revision": facts.revision,
        "to_revision": facts.previous_revision})




class OomParams(WorkloadAlertParams):
    window: str = "1h"  # how far back to look for the peak working set

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        return check_window(value)


@handler("incident.oom_killed", params=OomParams)
async def oom_killed(*, ctx: HandlerContext, params: OomParams, **_: object) -> Result:
    """OOMKilled containers: memory limit against the recent working set, how often."""
    workload = await read_workload(ctx)
    crash = CrashParams(alert=params.alert, pod=params.pod, container=params.container)
    facts = await crash_facts(ctx, workload, crash, reason="OOMKilled")
    if facts.pod is None or facts.last_reason != "OOMKilled":
        return diagnosis(
            what=f"no container of {workload.name} was OOM-killed last",
            cause="it recovered, or its pod was replaced" + (
                f" ({facts.note})" if facts.note else ""),
            alert=params.alert, data={"oom": False})
    pod, container = facts.pod, facts.container or "?"
    spec = container_spec(pod, container)
    limit_text = resource(spec, "limits", "memory")
    request_text = resource(spec, "requests", "memory")
    limit = to_bytes(limit_text)
    oom_pods = [p for p in await app_pods(ctx, workload)
                if _last_reason(p, container) == "OOMKilled"]
    series = selector(namespace=ctx.namespace, pod=pod.metadata.name, container=container)
    peak, problem = await prometheus_value(
        ctx, f"max(max_over_time(container_memory_working_set_bytes{series}[{params.window}]))")
    evidence = [
        ("Pod", f"{pod.metadata.name} ({container})" + (f"; {facts.note}" if facts.note else "")),
        ("Memory", f"limit {limit_text or 'none'}, request {request_text or 'none'}"),
        ("OOM kills", f"last termination OOMKilled (exit {facts.last_exit}); {facts.restarts} "
                      f"restarts; {len(oom_pods)} pod(s) of {workload.name} OOM-killed last"),
    ]
    if peak is not None:
        share = f" = {peak / limit:.0%} of the limit" if limit else ""
        evidence.append((f"Peak working set ({params.window})", f"{mebibytes(peak)}{share}"))
    else:
        evidence.append(("Working set", f"unknown: {problem}"))
    basis = max(peak or 0.0, limit or 0.0)
    if basis:
        advice = (f"raise the memory limit to about {mebibytes(basis * 1.5)} (1.5x "
                  f"{'the peak' if (peak or 0) >= (limit or 0) else 'the limit'}) in the app's "
                  "manifest, or find what grows; Restart only buys time")
    else:
        advice = "set a memory limit and request from the app's measured use"
    evidence.append(("Suggested", advice))
    cause = (f"{container} needs more memory than its limit {limit_text}" if limit_text
             else f"{container} has no memory limit and the node ran out of memory")
    if peak is not None and limit and peak < 0.8 * limit:
        cause += (f" in bursts: its working set peaked at {mebibytes(peak)} between scrapes, "
                  "so the spike is shorter than the scrape interval")
    return diagnosis(
        what=f"{container} in pod {pod.metadata.name} was OOM-killed ({facts.restarts} restarts)",
        cause=cause, alert=params.alert, since=facts.started, evidence=evidence,
        data={"oom": True, "pod": pod.metadata.name, "container": container,
              "memory_limit": limit_text, "peak_bytes": peak, "restarts": facts.restarts,
              "suggested_limit": mebibytes(basis * 1.5) if basis else None})


def _last_reason(pod: Any, container: str) -> str | None:
    status = container_status(pod, container)
    last = status.last_state.terminated if status is not None and status.last_state else None
    return last.reason if last is not None else None


