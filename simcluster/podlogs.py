"""Container logs as the kubelet serves them: generated lines for healthy containers, the
scripted log for crash-looping ones, and the real errors for containers that never started."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from .behaviours import OwnerLookup, Scripts, workloads_of
from .clock import SimClock, fmt_time, parse_time
from .errors import bad_request, invalid
from .rest import LogQuery

JSON = dict[str, Any]
RECENT_LINES = 120  # a healthy container's log: its start, then one request a minute
_REQUESTS = ("INFO GET /healthz 200 (1ms)", "INFO GET /api/products 200 (23ms)",
             "INFO POST /api/cart 201 (41ms)", "INFO GET /api/orders 200 (18ms)")
_SLOW = "WARN slow upstream: inventory answered in 612ms"


class PodLogs:
    def __init__(self, scripts: Scripts, lookup: OwnerLookup, clock: SimClock) -> None:
        self.scripts = scripts
        self.lookup = lookup
        self.clock = clock

    def __call__(self, pod: JSON, query: LogQuery) -> str:
        meta, spec = pod["metadata"], pod["spec"]
        since = _checked(meta["name"], query, self.clock.now())
        names = [c["name"] for c in spec.get("containers") or []]
        container = query.container
        if container is None:
            if len(names) != 1:
                raise bad_request(f"a container name must be specified for pod {meta['name']}, "
                                  f"choose one of: [{' '.join(names)}]")
            container = names[0]
        if container not in names:
            raise bad_request(f"container {container} is not valid for pod {meta['name']}")
        status: JSON = next((s for s in (pod.get("status") or {}).get("containerStatuses") or []
                       if s.get("name") == container), {})
        loop = self.scripts.crashloop_for(
            meta.get("namespace", ""), workloads_of(pod, self.lookup), container)
        terminated = (status.get("lastState") or {}).get("terminated")
        if query.previous:
            if not terminated or loop is None:
                raise bad_request(f'previous terminated container "{container}" in pod '
                                  f'"{meta["name"]}" not found')
            text, stamp = loop.log_text(), terminated.get("finishedAt") or self.clock.stamp()
        elif loop is not None and terminated:
            text, stamp = loop.log_text(), terminated.get("finishedAt") or self.clock.stamp()
        elif (status.get("state") or {}).get("terminated"):
            # A container that ran to its end (a Job's): the script's log, or a short run.
            ended = status["state"]["terminated"]
            stamp = ended.get("finishedAt") or self.clock.stamp()
            text = loop.log_text() if loop is not None else _finished(container, ended)
        else:
            running = (status.get("state") or {}).get("running")
            if running is None:
                waiting = (status.get("state") or {}).get("waiting") or {}
                reason = waiting.get("reason", "ContainerCreating")
                if reason in ("ErrImagePull", "ImagePullBackOff"):
                    reason = "trying and failing to pull image"
                raise bad_request(f'container "{container}" in pod "{meta["name"]}" is waiting '
                                  f"to start: {reason}")
            image = next(c["image"] for c in spec["containers"] if c["name"] == container)
            stamp = running["startedAt"]
            text = self._healthy(container, image, meta.get("namespace", ""), stamp)
        return _shape(text, query, stamp, since)

    def _healthy(self, container: str, image: str, namespace: str, started_at: str) -> str:
        start = parse_time(started_at)
        now = self.clock.now()
        lines = [
            (start, f"INFO {container}: starting {image}"),
            (start, f"INFO {container}: config loaded (namespace={namespace})"),
            (start + timedelta(seconds=1), f"INFO {container}: listening on :8080"),
            (start + timedelta(seconds=2), f"INFO {container}: ready"),
        ]
        # Then a request a minute until now (the newest RECENT_LINES of them), so a recent
        # window (`--since 10m`) always has lines, however long the pod has run.
        first = start + timedelta(seconds=30)
        if now >= first:
            minutes = int((now - first).total_seconds() // 60)
            for k in range(max(0, minutes - RECENT_LINES + 1), minutes + 1):
                text = _REQUESTS[k % len(_REQUESTS)] if k % 17 else _SLOW
                lines.append((first + timedelta(minutes=k), f"{text.split(' ', 1)[0]} "
                              f"{container}: {text.split(' ', 1)[1]}"))
        return "".join(f"{fmt_time(t)} {line}\n" for t, line in lines)


def _finished(container: str, terminated: JSON) -> str:
    start = terminated.get("startedAt", "")
    end = terminated.get("finishedAt", start)
    return (f"{start} INFO {container}: starting\n"
            f"{end} INFO {container}: done (exit code {terminated.get('exitCode', 0)})\n")


def _checked(name: str, query: LogQuery, now: datetime) -> datetime | None:
    """PodLogOptions as the API server validates them (422 Invalid), and the moment from which
    lines are wanted (sinceSeconds before now, or sinceTime), if any."""
    def refuse(field: str, value: object, why: str) -> None:
        raise invalid("PodLogOptions", "", name, field, value, why)

    if query.tail_lines is not None and query.tail_lines < 0:
        refuse("tailLines", query.tail_lines, "must be greater than or equal to 0")
    if query.limit_bytes is not None and query.limit_bytes < 1:
        refuse("limitBytes", query.limit_bytes, "must be greater than 0")
    if query.since_seconds is not None and query.since_time is not None:
        refuse("sinceSeconds", query.since_seconds,
               "at most one of `sinceTime` or `sinceSeconds` may be specified")
    if query.since_seconds is not None:
        if query.since_seconds < 1:
            refuse("sinceSeconds", query.since_seconds, "must be greater than 0")
        return now - timedelta(seconds=query.since_seconds)
    if query.since_time is not None:
        try:
            return parse_time(query.since_time)
        except ValueError:
            raise bad_request(f'parsing time "{query.since_time}" as '
                              '"2006-01-02T15:04:05Z07:00": cannot parse') from None
    return None


def _shape(text: str, query: LogQuery, fallback: str, since: datetime | None) -> str:
    """As the kubelet reads a container's log: lines from `since` on (inclusive), then the last
    tailLines of them, each prefixed with its time when asked, cut at limitBytes."""
    stamped = [(_kubelet_time(line, fallback), line) for line in text.splitlines(keepends=True)]
    if since is not None:
        stamped = [(moment, line) for moment, line in stamped if moment >= since]
    if query.tail_lines is not None:
        stamped = stamped[-query.tail_lines:] if query.tail_lines > 0 else []
    lines = [f"{_stamp(moment)} {line}" if query.timestamps else line
             for moment, line in stamped]
    out = "".join(lines)
    if query.limit_bytes is not None:
        out = out.encode()[: query.limit_bytes].decode(errors="ignore")
    return out


def _kubelet_time(line: str, fallback: str) -> datetime:
    """When the line was written: taken from the line when it starts with a time, else the
    container's (the scripted logs carry none)."""
    head = line.split(" ", 1)[0]
    try:
        return parse_time(head)
    except ValueError:
        return parse_time(fallback)


def _stamp(moment: datetime) -> str:
    """RFC 3339 nano timestamp the kubelet prefixes."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
