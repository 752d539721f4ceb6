"""`diag`: pods, warning events and crash logs of an app, condensed into one verdict line; with
Prometheus its error ratio and p99 latency, with Loki its last error lines, with Grafana a link.

Built for 3 a.m.: the verdict says what is wrong; the details go to a thread.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from bot import messages
from bot.errors import HandlerError
from bot.loki import LokiClient, line_filter, stream_selector
from bot.prometheus import PrometheusClient
from bot.registry import HandlerContext, Params, Result, handler
from handlers.links import RECENT, dashboard_field
from handlers.logs import loki_labels
from handlers.metrics import measure, queries
from handlers.workload import Workload, read_workload, selector_string

__all__ = ["DiagParams", "diag"]

_WAITING_BAD = {
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "CreateContainerConfigError",
    "InvalidImageName",
    "CreateContainerError",
    "RunContainerError",
}


class DiagParams(Params):
    log_lines: int = Field(default=20, ge=1, le=500)
    max_events: int = Field(default=20, ge=1, le=200)


@dataclass
class ContainerFinding:
    pod: str
    container: str
    restarts: int
    waiting: str | None
    last_reason: str | None
    last_exit: int | None
    last_finished: datetime | None
    memory_limit: str | None
    image: str
    log_tail: str | None = None


@dataclass
class Findings:
    pods: list[Any] = field(default_factory=list)
    containers: list[ContainerFinding] = field(default_factory=list)
    events: list[Any] = field(default_factory=list)
    error_lines: list[str] = field(default_factory=list)  # from Loki


@handler("k8s.diag", params=DiagParams)
async def diag(*, ctx: HandlerContext, params: DiagParams, **_: object) -> Result:
    """Pods, restarts, last termination reasons, warning events and previous logs of crashes."""
    workload = await read_workload(ctx)
    found = Findings()
    pods = await ctx.kube.call(
        ctx.kube.core.list_namespaced_pod,
        workload.namespace,
        label_selector=selector_string(workload),
    )
    found.pods = sorted(pods.items, key=lambda p: p.metadata.name)
    limits = {
        c.name: ((c.resources.limits or {}) if c.resources else {}).get("memory")
        for c in workload.obj.spec.template.spec.containers
    }
    for pod in found.pods:
        for cs in (pod.status.container_statuses or []) if pod.status else []:
            found.containers.append(_container(pod, cs, limits.get(cs.name)))
    await ctx.progress(f"{len(found.pods)} pods read; reading events")
    found.events = await _warning_events(ctx, workload, found.pods, params.max_events)
    for finding in found.containers:
        if finding.restarts and finding.last_reason:
            finding.log_tail = await _previous_log(
                ctx, workload.namespace, finding, params.log_lines
            )
    verdict = _verdict(workload, found)
    ready = sum(1 for pod in found.pods if _pod_ready(pod))
    fields = (
        ("Pods", f"{ready}/{len(found.pods)} ready ({workload.desired} desired)"),
        ("Restarts", str(sum(c.restarts for c in found.containers))),
        ("Warning events", str(len(found.events))),
        *await _signals(ctx),
        *await _loki_errors(ctx, workload, found, params.log_lines),
        *dashboard_field(ctx),
    )
    return Result(
        summary=verdict,
        fields=fields,
        output=_details(found),
        data={"ready": ready, "pods": len(found.pods)},
    )


async def _signals(ctx: HandlerContext) -> list[tuple[str, str]]:
    """The app's error ratio and p99 latency now, when Prometheus is configured; a diagnosis
    never fails for them (a failed query says why)."""
    url = ctx.settings.prometheus_url
    if not url:
        return []
    promql = queries(ctx, "1h", ("error_ratio", "p99_latency"))
    async with PrometheusClient(url) as prometheus:
        signals = await measure(prometheus, promql)
    return [(messages.diag_signal_field(s.name), s.shown) for s in signals]


async def _loki_errors(ctx: HandlerContext, workload: Workload, found: Findings,
                       lines: int) -> list[tuple[str, str]]:
    """The app's last error lines of the past hour from Loki, when it is configured."""
    config = ctx.settings.loki
    if not config.url:
        return []
    selector = stream_selector(loki_labels(ctx, workload.name))
    query = f"{selector} {line_filter(config.error_filter, regex=True)}"
    end = datetime.now(UTC)
    try:
        async with LokiClient(config.url, tenant=config.tenant,
                              timeout=config.timeout_seconds) as loki:
            entries = await loki.query_range(query, end - RECENT, end, lines)
    except HandlerError as exc:
        return [(messages.diag_loki_field(), messages.diag_loki_failed(str(exc)))]
    found.error_lines = [
        f"{e.time:%H:%M:%S} {e.labels.get('pod') or e.labels.get('container') or '-'} {e.line}"
        for e in entries]
    return [(messages.diag_loki_field(), str(len(entries)))]


def _container(pod: Any, cs: Any, memory_limit: str | None) -> ContainerFinding:
    last = cs.last_state.terminated if cs.last_state and cs.last_state.terminated else None
    waiting = cs.state.waiting.reason if cs.state and cs.state.waiting else None
    return ContainerFinding(
        pod=pod.metadata.name,
        container=cs.name,
        restarts=int(cs.restart_count or 0),
        waiting=waiting,
        last_reason=last.reason if last else None,
        last_exit=last.exit_code if last else None,
        last_finished=last.finished_at if last else None,
        memory_limit=memory_limit,
        image=cs.image,
    )


async def _warning_events(
    ctx: HandlerContext, workload: Workload, pods: list[Any], limit: int
) -> list[Any]:
    # One list call; the owner chain (workload, its ReplicaSets, its pods) is matched by name.
    events = await ctx.kube.call(
        ctx.kube.core.list_namespaced_event, workload.namespace, field_selector="type=Warning"
    )
    names = {workload.name} | {pod.metadata.name for pod in pods}
    names |= {ref.name for pod in pods for ref in (pod.metadata.owner_references or [])}
    mine = [e for e in events.items if e.involved_object and e.involved_object.name in names]
    mine.sort(key=_event_time, reverse=True)
    return mine[:limit]


async def _previous_log(
    ctx: HandlerContext, namespace: str, finding: ContainerFinding, lines: int
) -> str | None:
    try:
        text = await ctx.kube.call(
            ctx.kube.core.read_namespaced_pod_log,
            finding.pod,
            namespace,
            container=finding.container,
            previous=True,
            tail_lines=lines,
        )
    except HandlerError as exc:
        return f"(previous log unavailable: {exc})"
    return str(text).rstrip() or None


def _verdict(workload: Workload, found: Findings) -> str:
    name = workload.name
    bad_waiting = [c for c in found.containers if c.waiting in _WAITING_BAD]
    pulls = [c for c in bad_waiting if c.waiting in ("ImagePullBackOff", "ErrImagePull")]
    if pulls:
        return f"{name}: image {pulls[0].image} cannot be pulled ({pulls[0].waiting})"
    crashing = [c for c in found.containers if c.restarts > 0 and c.last_reason]
    if crashing:
        reasons = Counter(c.last_reason for c in crashing)
        reason = reasons.most_common(1)[0][0]
        worst = max((c for c in crashing if c.last_reason == reason), key=lambda c: c.restarts)
        times = sum(c.restarts for c in crashing if c.last_reason == reason)
        window = _crash_window(found.events, {c.pod for c in crashing})
        text = f"{name}: {reason} {times} time{'s' if times != 1 else ''}"
        if window:
            text += f" in {window}"
        if reason == "OOMKilled" and worst.memory_limit:
            text += f"; memory limit {worst.memory_limit}"
        elif worst.last_exit is not None:
            text += f"; last exit code {worst.last_exit}"
        if worst.waiting == "CrashLoopBackOff":
            text += "; now in CrashLoopBackOff"
        return text
    if bad_waiting:
        return f"{name}: container {bad_waiting[0].container} is waiting: {bad_waiting[0].waiting}"
    ready = sum(1 for pod in found.pods if _pod_ready(pod))
    if ready < workload.desired:
        return f"{name}: {ready}/{workload.desired} pods ready; see events below"
    if found.events:
        top = Counter(e.reason for e in found.events).most_common(1)[0][0]
        return f"{name}: {ready}/{workload.desired} pods ready, but recent warnings ({top})"
    return f"{name}: healthy, {ready}/{workload.desired} pods ready, no warning events"


def _crash_window(events: list[Any], pods: set[str]) -> str | None:
    times = [
        t
        for e in events
        if e.involved_object.name in pods
        for t in (e.first_timestamp, e.last_timestamp, e.event_time)
        if t
    ]
    if len(times) < 2:
        return None
    minutes = int((max(times) - min(times)).total_seconds() // 60)
    if minutes < 1:
        return None
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h"


def _pod_ready(pod: Any) -> bool:
    conditions = pod.status.conditions if pod.status else None
    return any(c.type == "Ready" and c.status == "True" for c in conditions or [])


def _event_time(event: Any) -> datetime:
    return (
        event.last_timestamp
        or event.event_time
        or event.first_timestamp
        or datetime.min.replace(tzinfo=UTC)
    )


def _details(found: Findings) -> str:
    lines = ["PODS"]
    for pod in found.pods:
        statuses = pod.status.container_statuses or [] if pod.status else []
        ready = sum(1 for cs in statuses if cs.ready)
        restarts = sum(int(cs.restart_count or 0) for cs in statuses)
        phase = pod.status.phase if pod.status else "Unknown"
        lines.append(
            f"  {pod.metadata.name}  {phase}  ready {ready}/{len(statuses)}  restarts {restarts}"
        )
    for c in found.containers:
        if c.last_reason or c.waiting:
            state = f"waiting {c.waiting}" if c.waiting else "running"
            last = f"last terminated {c.last_reason} (exit {c.last_exit})" if c.last_reason else ""
            lines.append(f"    {c.container}: {state}; {last}".rstrip("; "))
    lines.append("")
    lines.append("WARNING EVENTS" if found.events else "WARNING EVENTS: none")
    for e in found.events:
        count = f" x{e.count}" if e.count and e.count > 1 else ""
        when = _event_time(e).strftime("%H:%M:%S")
        lines.append(
            f"  {when}  {e.involved_object.kind}/{e.involved_object.name}  "
            f"{e.reason}{count}: {e.message}"
        )
    for c in found.containers:
        if c.log_tail:
            lines.append("")
            lines.append(f"PREVIOUS LOG {c.pod}/{c.container} (last lines)")
            lines.extend(f"  {line}" for line in c.log_tail.splitlines())
    if found.error_lines:
        lines.append("")
        lines.append(messages.diag_loki_heading(len(found.error_lines)))
        lines.extend(f"  {line}" for line in found.error_lines)
    return "\n".join(lines)
