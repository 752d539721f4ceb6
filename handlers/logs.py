"""`logs`: an app's pod logs merged by time, from the Kubernetes API or from Loki when the
platform ships logs there, bounded in lines and bytes; the newest lines inline, the whole
bounded text as a file when it is longer than a chat thread holds.

`--grep` is a plain substring, never a regex from chat (no pattern can be slow or match
across what it should not); Loki gets it as a `|=` line filter, quoted.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import Field, field_validator

from bot import messages
from bot.errors import NotFound, PermanentError, Refused
from bot.loki import LokiClient, line_filter, stream_selector
from bot.numbers import parse_duration
from bot.registry import Attachment, HandlerContext, Params, Result, handler
from handlers.workload import Workload, read_workload, selector_string

__all__ = ["LogsParams", "logs", "loki_labels", "render_lines"]

DEFAULT_TAIL = 100  # lines, when neither --tail nor --since is given
MAX_TAIL = 5000
MAX_LINES = 5000  # merged lines kept, the newest
MAX_BYTES = 512 * 1024  # merged text kept, the newest
CONTAINER_BYTES = 2 * 1024 * 1024  # limitBytes of one container's answer
MAX_PODS = 20  # pods asked, the newest first
INLINE_LINES = 200  # shown in the message's thread or the console
INLINE_CHARS = 30_000  # what about ten thread replies hold
LOKI_DEFAULT_SINCE = timedelta(hours=1)  # Loki needs a start; its own default is 1h too
MAX_GREP = 200


class LogsParams(Params):
    since: str | None = None  # a duration: lines from that long ago on
    tail: int | None = Field(default=None, ge=1, le=MAX_TAIL)  # the newest N lines
    container: str | None = None
    previous: bool = False
    grep: str | None = None  # a plain substring

    @field_validator("since")
    @classmethod
    def _since(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_duration(value, shortest=timedelta(seconds=1), longest=timedelta(days=30),
                               what="--since")
            except Exception as exc:  # UsageError: shown as the bad argument
                raise ValueError(str(exc)) from None
        return value

    @field_validator("grep")
    @classmethod
    def _grep(cls, value: str | None) -> str | None:
        if value is not None and (not value or len(value) > MAX_GREP or "\n" in value):
            raise ValueError(f"--grep takes one line of 1 to {MAX_GREP} characters")
        return value


@dataclass(frozen=True)
class Line:
    time: datetime
    source: str  # pod, or pod/container
    text: str


@dataclass
class Fetched:
    lines: list[Line]
    source: str  # for the Source field
    notes: list[str]
    pods: int = 0


@handler("k8s.logs", params=LogsParams)
async def logs(*, ctx: HandlerContext, params: LogsParams, **_: object) -> Result:
    """The app's pod logs merged by time (Kubernetes API, or Loki when configured)."""
    app = ctx.require_app()
    since = parse_duration(params.since) if params.since else None
    wanted = params.tail or (MAX_LINES if since else DEFAULT_TAIL)
    workload = await read_workload(ctx)
    containers = _containers(workload)
    if params.container is not None and params.container not in containers:
        raise Refused(messages.logs_no_container(app.name, params.container, containers))
    loki = ctx.settings.loki
    if loki.url and not params.previous:
        fetched = await _from_loki(ctx, workload, params, since, wanted)
    else:
        fetched = await _from_kubernetes(ctx, workload, containers, params, since, wanted)
    lines = fetched.lines
    if params.grep is not None:
        lines = [line for line in lines if params.grep in line.text]
    text, kept, cut = render_lines(lines[-wanted:])
    window = messages.logs_window(params.since, params.tail, wanted, params.previous)
    fields = [("Source", fetched.source), ("Window", window)]
    if params.grep is not None:
        fields.append(("Containing", params.grep))
    if cut:
        fields.append(("Left out", messages.logs_left_out(cut, MAX_LINES, MAX_BYTES)))
    output, attachment = _shown(text, kept, app.name, ctx.environment.name)
    if fetched.notes:
        output = "\n".join([*fetched.notes, output or ""]).rstrip("\n")
    summary = messages.logs_summary(app.name, kept, fetched.pods, from_loki=bool(
        loki.url and not params.previous))
    return Result(
        summary=summary,
        fields=tuple(fields),
        output=output or None,
        attachments=(attachment,) if attachment else (),
        data={"lines": kept, "pods": fetched.pods},
    )


def _containers(workload: Workload) -> list[str]:
    spec = workload.obj.spec.template.spec
    return [c.name for c in (spec.containers or [])] + \
        [c.name for c in (spec.init_containers or [])]


async def _from_kubernetes(ctx: HandlerContext, workload: Workload, containers: list[str],
                           params: LogsParams, since: timedelta | None,
                           wanted: int) -> Fetched:
    pods = await ctx.kube.call(ctx.kube.core.list_namespaced_pod, workload.namespace,
                               label_selector=selector_string(workload))
    items = sorted(pods.items, key=lambda p: p.metadata.creation_timestamp or datetime.min,
                   reverse=True)
    notes = []
    if len(items) > MAX_PODS:
        notes.append(messages.logs_pods_left_out(len(items), MAX_PODS))
        items = items[:MAX_PODS]
    main = workload.obj.spec.template.spec.containers or []
    chosen = [params.container] if params.container else [c.name for c in main]
    # With --grep, more of each log is read so the newest matches are found (still bounded).
    tail = MAX_LINES if params.grep is not None else min(wanted, MAX_LINES)
    per_source: list[list[Line]] = []
    for pod in sorted(items, key=lambda p: p.metadata.name):
        for container in chosen:
            source = pod.metadata.name if len(chosen) == 1 else f"{pod.metadata.name}/{container}"
            kwargs: dict[str, Any] = {"container": container, "timestamps": True,
                                      "tail_lines": tail, "limit_bytes": CONTAINER_BYTES}
            if params.previous:
                kwargs["previous"] = True
            if since is not None:
                kwargs["since_seconds"] = max(1, int(since.total_seconds()))
            try:
                text = await ctx.kube.call(ctx.kube.core.read_namespaced_pod_log,
                                           pod.metadata.name, workload.namespace, **kwargs)
            except NotFound:
                notes.append(messages.logs_pod_gone(source))
                continue
            except PermanentError as exc:  # waiting to start, no previous container, ...
                notes.append(messages.logs_unavailable(source, str(exc)))
                continue
            per_source.append(_parse_kubelet(str(text), source))
    await ctx.progress(messages.logs_progress(len(items)))
    merged = list(heapq.merge(*per_source, key=lambda line: line.time))
    return Fetched(merged, messages.logs_source_kubernetes(len(items), params.previous),
                   notes, len(items))


def _parse_kubelet(text: str, source: str) -> list[Line]:
    """`<RFC 3339 nano> <line>` as the kubelet writes with timestamps=true; a line without a
    readable time takes the one before it, so the order within a container stays."""
    lines: list[Line] = []
    last = datetime.min.replace(tzinfo=UTC)
    for raw in text.splitlines():
        head, _, rest = raw.partition(" ")
        moment = _rfc3339(head)
        if moment is None:
            moment, rest = last, raw
        last = moment
        lines.append(Line(moment, source, rest))
    return lines


def _rfc3339(text: str) -> datetime | None:
    if not text.endswith("Z") or "T" not in text:
        return None
    whole, _, fraction = text[:-1].partition(".")
    try:
        moment = datetime.fromisoformat(whole).replace(tzinfo=UTC)
    except ValueError:
        return None
    digits = fraction[:6].ljust(6, "0")
    return moment.replace(microsecond=int(digits)) if digits.isdigit() else moment


async def _from_loki(ctx: HandlerContext, workload: Workload, params: LogsParams,
                     since: timedelta | None, wanted: int) -> Fetched:
    config = ctx.settings.loki
    assert config.url is not None
    labels = loki_labels(ctx, workload.name)
    if params.container is not None:
        labels["container"] = params.container
    query = stream_selector(labels)
    if params.grep is not None:
        query += " " + line_filter(params.grep)
    end = datetime.now(UTC)
    start = end - (since or LOKI_DEFAULT_SINCE)
    async with LokiClient(config.url, tenant=config.tenant,
                          timeout=config.timeout_seconds) as loki:
        found = await loki.query_range(query, start, end, min(wanted, MAX_LINES))
    lines = [Line(entry.time, _loki_source(entry.labels), entry.line) for entry in found]
    pods = len({entry.labels.get("pod") for entry in found if entry.labels.get("pod")})
    return Fetched(lines, messages.logs_source_loki(loki.shown_url, query), [], pods)


def loki_labels(ctx: HandlerContext, workload: str) -> dict[str, str]:
    """The app's Loki stream labels (`apps.<app>.log_labels`, else `loki.labels`), filled in;
    the values are quoted when the selector is built."""
    app = ctx.require_app()
    return {name: template.format(app=app.name, namespace=ctx.namespace,
                                  env=ctx.environment.name, workload=workload)
            for name, template in (app.log_labels or ctx.settings.loki.labels).items()}


def _loki_source(labels: dict[str, str]) -> str:
    pod, container = labels.get("pod"), labels.get("container")
    if pod and container:
        return f"{pod}/{container}"
    return pod or container or labels.get("instance") or "-"


def render_lines(lines: list[Line]) -> tuple[str, int, int]:
    """The lines as text (time, source, line), the newest within MAX_BYTES; also how many are
    kept and how many were cut for the bound."""
    rendered = [f"{_shown_time(line.time)} {line.source} {line.text}" for line in lines]
    total, start = 0, len(rendered)
    while start > 0 and total + len(rendered[start - 1].encode()) + 1 <= MAX_BYTES:
        start -= 1
        total += len(rendered[start].encode()) + 1
    kept = rendered[start:]
    return "\n".join(kept), len(kept), len(rendered) - len(kept)


def _shown_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _shown(text: str, lines: int, app: str, environment: str,
           ) -> tuple[str, Attachment | None]:
    """The newest lines inline; everything kept as a file when that is more than a thread
    holds."""
    if lines <= INLINE_LINES and len(text) <= INLINE_CHARS:
        return text, None
    inline = text.splitlines()[-INLINE_LINES:]
    while inline and sum(len(line) + 1 for line in inline) > INLINE_CHARS:
        inline.pop(0)
    title = messages.logs_file_title(app, environment, lines)
    attachment = Attachment(filename=f"logs-{app}-{environment}.txt",
                            content=(text + "\n").encode(), title=title, mimetype="text/plain")
    return "\n".join([messages.logs_inline_note(len(inline), lines), *inline]), attachment
