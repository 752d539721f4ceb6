"""Container logs as the kubelet serves them: generated lines for healthy containers, the
scripted log for crash-looping ones, and the real errors for containers that never started."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from .behaviours import OwnerLookup, Scripts, workloads_of
from .clock import SimClock, fmt_time, parse_time
from .errors import bad_request
from .rest import LogQuery

JSON = dict[str, Any]


class PodLogs:
    def __init__(self, scripts: Scripts, lookup: OwnerLookup, clock: SimClock) -> None:
        self.scripts = scripts
        self.lookup = lookup
        self.clock = clock

    def __call__(self, pod: JSON, query: LogQuery) -> str:
        meta, spec = pod["metadata"], pod["spec"]
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
        return _shape(text, query, stamp)

    def _healthy(self, container: str, image: str, namespace: str, started_at: str) -> str:
        start = parse_time(started_at)
        now = self.clock.now()
        lines = [
            (start, f"INFO {container}: starting {image}"),
            (start, f"INFO {container}: config loaded (namespace={namespace})"),
            (start + timedelta(seconds=1), f"INFO {container}: listening on :8080"),
            (start + timedelta(seconds=2), f"INFO {container}: ready"),
        ]
        probe = start + timedelta(seconds=30)
        checks: list[tuple[datetime, str]] = []
        while probe <= now and len(checks) < 200:
            checks.append((probe, f"INFO {container}: GET /healthz 200 (1ms)"))
            probe += timedelta(minutes=5)
        lines += checks[-6:]
        return "".join(f"{fmt_time(t)} {line}\n" for t, line in lines)


def _finished(container: str, terminated: JSON) -> str:
    start = terminated.get("startedAt", "")
    end = terminated.get("finishedAt", start)
    return (f"{start} INFO {container}: starting\n"
            f"{end} INFO {container}: done (exit code {terminated.get('exitCode', 0)})\n")


def _shape(text: str, query: LogQuery, fallback: str) -> str:
    lines = text.splitlines(keepends=True)
    if query.tail_lines is not None:
        lines = lines[-query.tail_lines:] if query.tail_lines > 0 else []
    if query.timestamps:
        lines = [f"{_kubelet_stamp(line, fallback)} {line}" for line in lines]
    out = "".join(lines)
    if query.limit_bytes is not None:
        out = out[: query.limit_bytes]
    return out


def _kubelet_stamp(line: str, fallback: str) -> str:
    """RFC 3339 nano timestamp the kubelet prefixes; taken from the line when it has one."""
    head = line.split(" ", 1)[0]
    try:
        moment = parse_time(head)
    except ValueError:
        moment = parse_time(fallback)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
