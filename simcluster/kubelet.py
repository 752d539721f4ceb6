"""The simulated scheduler and kubelet: place pods on the one fake node, then move them
Pending -> Running/Ready a tick later, unless a script says they crash-loop, fail to pull
their image or never become ready."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from .behaviours import CrashLoop, workloads_of
from .clock import fmt_time, parse_time
from .controllers import BUILTINS, Ctx

JSON = dict[str, Any]
NODE = "sim-node-1"
HOST_IP = "10.0.0.11"
PULL_WAITING = {"ErrImagePull", "ImagePullBackOff"}


def _digest(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()


def image_id(image: str) -> str:
    repo = image.split("@")[0].rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    return f"{repo}@sha256:{_digest('image', image)}"


def pod_ip(uid: str) -> str:
    raw = int(_digest("ip", uid)[:8], 16)
    return f"10.244.{(raw >> 8) % 4}.{raw % 250 + 2}"


def _mode(pod: JSON) -> str:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    waiting = {(s.get("state") or {}).get("waiting", {}).get("reason") for s in statuses}
    if not statuses or waiting == {"ContainerCreating"}:
        return "creating"
    if "CrashLoopBackOff" in waiting:
        return "crashloop"
    if waiting & PULL_WAITING:
        return "ImagePullBackOff" if "ImagePullBackOff" in waiting else "ErrImagePull"
    return "ready" if all(s.get("ready") for s in statuses) else "notready"


def _target(ctx: Ctx, pod: JSON, current: str) -> tuple[str, CrashLoop | None]:
    namespace = pod["metadata"].get("namespace", "")
    names = workloads_of(pod, lambda kind, ns, name: _lookup(ctx, kind, ns, name))
    images = [c.get("image", "") for c in pod["spec"]["containers"]]
    if current in ("creating", *PULL_WAITING) and any(ctx.scripts.pull_fails(i) for i in images):
        return ("ImagePullBackOff" if current in PULL_WAITING else "ErrImagePull"), None
    for container in pod["spec"]["containers"]:
        loop = ctx.scripts.crashloop_for(namespace, names, container["name"])
        if loop is not None:
            return "crashloop", loop
    if current != "ready" and ctx.scripts.is_never_ready(namespace, names):
        return "notready", None  # pods already ready stay so: only new pods get stuck
    return "ready", None


def _lookup(ctx: Ctx, kind: str, namespace: str, name: str) -> JSON | None:
    rtype = ctx.types.by_kind("apps", kind)
    return ctx.api.store.get(rtype, namespace, name) if rtype is not None else None


@BUILTINS.for_kind("", "Pod", name="kubelet", order=40)
def reconcile_pod(ctx: Ctx, pod: JSON) -> None:
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return
    if not pod["spec"].get("nodeName"):
        _schedule(ctx, pod)
        return
    current = _mode(pod)
    target, loop = _target(ctx, pod, current)
    if target == current and target != "crashloop":
        return
    if target == "crashloop" and loop is not None and _crashing(pod, loop):
        return
    starting = current in ("creating", *PULL_WAITING)
    if target in PULL_WAITING:
        _pull_error(ctx, pod, target)
        return
    _run(ctx, pod, target, loop, starting)


def _crashing(pod: JSON, loop: CrashLoop) -> bool:
    for status in pod["status"].get("containerStatuses") or []:
        if status["name"] == loop.container:
            return bool((status.get("state") or {}).get("waiting", {}).get("reason")
                        == "CrashLoopBackOff")
    return False


def _schedule(ctx: Ctx, pod: JSON) -> None:
    now = ctx.clock.stamp()
    pod["spec"]["nodeName"] = NODE
    status = pod.setdefault("status", {})
    status.update({
        "phase": "Pending", "hostIP": HOST_IP, "hostIPs": [{"ip": HOST_IP}], "startTime": now,
        "conditions": [
            _cond("PodReadyToStartContainers", "False", now),
            _cond("Initialized", "True", now),
            _cond("Ready", "False", now, "ContainersNotReady", _unready(pod, None)),
            _cond("ContainersReady", "False", now, "ContainersNotReady", _unready(pod, None)),
            _cond("PodScheduled", "True", now),
        ],
        "containerStatuses": [
            {"name": c["name"], "image": c["image"], "imageID": "", "ready": False,
             "started": False, "restartCount": 0, "lastState": {},
             "state": {"waiting": {"reason": "ContainerCreating"}}}
            for c in pod["spec"]["containers"]
        ],
    })
    ctx.write(pod)
    meta = pod["metadata"]
    ctx.event(pod, "Normal", "Scheduled",
              f"Successfully assigned {meta['namespace']}/{meta['name']} to {NODE}",
              component="default-scheduler")


def _cond(type_: str, status: str, at: str, reason: str | None = None,
          message: str | None = None) -> JSON:
    cond: JSON = {"type": type_, "status": status, "lastProbeTime": None,
                  "lastTransitionTime": at}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def _unready(pod: JSON, ready: set[str] | None) -> str:
    names = [c["name"] for c in pod["spec"]["containers"] if not ready or c["name"] not in ready]
    return f"containers with unready status: [{' '.join(names)}]"


def _pull_error(ctx: Ctx, pod: JSON, reason: str) -> None:
    status = pod["status"]
    for cstatus, container in zip(status["containerStatuses"], pod["spec"]["containers"],
                                  strict=False):
        image = container["image"]
        if not ctx.scripts.pull_fails(image):
            continue
        message = (f'Back-off pulling image "{image}"' if reason == "ImagePullBackOff" else
                   f'failed to pull and unpack image "{image}": not found')
        cstatus["state"] = {"waiting": {"reason": reason, "message": message}}
        field_path = f"spec.containers{{{container['name']}}}"
        if reason == "ErrImagePull":
            ctx.event(pod, "Normal", "Pulling", f'Pulling image "{image}"',
                      component="kubelet", field_path=field_path)
            ctx.event(pod, "Warning", "Failed",
                      f'Failed to pull image "{image}": rpc error: code = NotFound desc = '
                      f'failed to pull and unpack image "{image}": not found',
                      component="kubelet", field_path=field_path)
            ctx.event(pod, "Warning", "Failed", "Error: ErrImagePull", component="kubelet",
                      field_path=field_path)
        else:
            ctx.event(pod, "Normal", "BackOff", f'Back-off pulling image "{image}"',
                      component="kubelet", field_path=field_path)
            ctx.event(pod, "Warning", "Failed", "Error: ImagePullBackOff", component="kubelet",
                      field_path=field_path)
    status["phase"] = "Pending"
    ctx.write(pod)


def _run(ctx: Ctx, pod: JSON, target: str, loop: CrashLoop | None, starting: bool) -> None:
    now = ctx.now()
    stamp = fmt_time(now)
    meta, status = pod["metadata"], pod["status"]
    ready_names: set[str] = set()
    statuses = []
    for container in pod["spec"]["containers"]:
        name, image = container["name"], container["image"]
        previous: JSON = next(
            (s for s in status.get("containerStatuses") or [] if s["name"] == name), {})
        started_at = ((previous.get("state") or {}).get("running") or {}).get("startedAt", stamp)
        cstatus: JSON = {
            "name": name, "image": image, "imageID": image_id(image),
            "containerID": f"containerd://{_digest(meta['uid'], name, '0')}",
            "lastState": {}, "restartCount": 0,
        }
        if starting:
            started_events(ctx, pod, name, image)
        if loop is not None and loop.container == name:
            cstatus.update(_crashloop_status(ctx, pod, loop))
            statuses.append(cstatus)
            continue
        cstatus["state"] = {"running": {"startedAt": started_at}}
        cstatus["started"] = True
        cstatus["ready"] = target != "notready"
        if cstatus["ready"]:
            ready_names.add(name)
        elif target == "notready":
            ctx.event(pod, "Warning", "Unhealthy",
                      "Readiness probe failed: HTTP probe failed with statuscode: 503",
                      component="kubelet", field_path=f"spec.containers{{{name}}}")
        statuses.append(cstatus)
    all_ready = len(ready_names) == len(statuses)
    status["phase"] = "Running"
    status["podIP"] = pod_ip(meta["uid"])
    status["podIPs"] = [{"ip": status["podIP"]}]
    status["containerStatuses"] = statuses
    ready = "True" if all_ready else "False"
    why = None if all_ready else "ContainersNotReady"
    detail = None if all_ready else _unready(pod, ready_names)
    status["conditions"] = [
        _keep(status, _cond("PodReadyToStartContainers", "True", stamp)),
        _keep(status, _cond("Initialized", "True", stamp)),
        _keep(status, _cond("Ready", ready, stamp, why, detail)),
        _keep(status, _cond("ContainersReady", ready, stamp, why, detail)),
        _keep(status, _cond("PodScheduled", "True", stamp)),
    ]
    ctx.write(pod)


def started_events(ctx: Ctx, pod: JSON, name: str, image: str) -> None:
    """The kubelet's events for a container it starts: Pulled, Created, Started."""
    field_path = f"spec.containers{{{name}}}"
    for reason, message in (
        ("Pulled", f'Container image "{image}" already present on machine'),
        ("Created", f"Created container: {name}"),
        ("Started", f"Started container {name}"),
    ):
        ctx.event(pod, "Normal", reason, message, component="kubelet", field_path=field_path)


def _keep(status: JSON, cond: JSON) -> JSON:
    """Keep lastTransitionTime when the condition's status did not change."""
    for old in status.get("conditions") or []:
        if old.get("type") == cond["type"] and old.get("status") == cond["status"]:
            cond["lastTransitionTime"] = old.get("lastTransitionTime", cond["lastTransitionTime"])
    return cond


def crash_window(loop: CrashLoop, pod_started: datetime, now: datetime
                 ) -> tuple[datetime, datetime, datetime]:
    """(first restart, last run's start, last run's end) for a crash loop observed now: the
    restarts spread over `over_minutes` (or the pod's life, if shorter), the last run ended
    a little before now and the container has been in back-off since."""
    span = max(min(timedelta(minutes=loop.over_minutes), now - pod_started), timedelta(0))
    interval = span / max(loop.restarts, 1)
    finished = now - min(timedelta(minutes=2), interval)
    return now - span, finished - min(interval, timedelta(minutes=3)), finished


def _crashloop_status(ctx: Ctx, pod: JSON, loop: CrashLoop) -> JSON:
    meta = pod["metadata"]
    started = parse_time(pod["status"].get("startTime") or meta["creationTimestamp"])
    now = ctx.now()
    first, run_started, finished = crash_window(loop, started, now)
    restarts = max(loop.restarts, 1)
    container = loop.container
    field_path = f"spec.containers{{{container}}}"
    image = next(c["image"] for c in pod["spec"]["containers"] if c["name"] == container)
    started_msgs = (
        ("Pulled", f'Container image "{image}" already present on machine'),
        ("Created", f"Created container: {container}"),
        ("Started", f"Started container {container}"),
    )
    for reason, message in started_msgs:
        ctx.event(pod, "Normal", reason, message, component="kubelet", count=restarts,
                  first=first, last=run_started, field_path=field_path)
    # back-off events keep coming while the container waits, so the last one is "now"
    ctx.event(pod, "Warning", "BackOff",
              f"Back-off restarting failed container {container} in pod "
              f"{meta['name']}_{meta['namespace']}({meta['uid']})",
              component="kubelet", count=restarts, first=first, last=now, field_path=field_path)
    return {
        "ready": False,
        "started": False,
        "restartCount": loop.restarts,
        "containerID": f"containerd://{_digest(meta['uid'], container, str(loop.restarts))}",
        "state": {"waiting": {
            "reason": "CrashLoopBackOff",
            "message": f"back-off 5m0s restarting failed container={container} "
                       f"pod={meta['name']}_{meta['namespace']}({meta['uid']})",
        }},
        "lastState": {"terminated": {
            "exitCode": loop.exit_code,
            "reason": loop.reason,
            "startedAt": fmt_time(run_started),
            "finishedAt": fmt_time(finished),
            "containerID": f"containerd://{_digest(meta['uid'], container, str(loop.restarts))}",
        }},
    }
