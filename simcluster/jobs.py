"""The Job controller and the end of a Job's pods: pods are created from the template up to
`parallelism`, run to completion a tick after they start (or fail as a crash-loop script
says), and the Job counts them against `completions`, `backoffLimit` and
`activeDeadlineSeconds` as the real controller does. CronJobs are stored, not scheduled."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from .behaviours import CrashLoop, workloads_of
from .clock import fmt_time, parse_time
from .controllers import BUILTINS, Ctx
from .kubelet import image_id, started_events
from .replicasets import pod_from_template, pod_ready

JSON = dict[str, Any]
COMPONENT = "job-controller"
BACKOFF_MESSAGE = "Job has reached the specified backoff limit"
DEADLINE_MESSAGE = "Job was active longer than specified deadline"


def _terminal(pod: JSON) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _condition(job: JSON, type_: str) -> JSON | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_ and cond.get("status") == "True":
            return cond  # type: ignore[no-any-return]
    return None


def finished(job: JSON) -> bool:
    return _condition(job, "Complete") is not None or _condition(job, "Failed") is not None


def _restarts(pod: JSON) -> int:
    return sum(int(s.get("restartCount", 0))
               for s in (pod.get("status") or {}).get("containerStatuses") or [])


@BUILTINS.for_kind("batch", "Job", name="job-controller", order=22)
def reconcile_job(ctx: Ctx, job: JSON) -> None:
    spec = job["spec"]
    status: JSON = job.setdefault("status", {})
    pods = ctx.owned(job, "", "Pod")
    if finished(job):
        _expire(ctx, job)
        return
    if spec.get("suspend"):
        for pod in pods:
            if not _terminal(pod):
                ctx.delete(pod)
        _count(job, ctx.owned(job, "", "Pod"))
        ctx.write(job)
        return
    now = ctx.now()
    status.setdefault("startTime", fmt_time(now))
    succeeded = sum(1 for p in pods if p["status"].get("phase") == "Succeeded")
    failed = sum(1 for p in pods if p["status"].get("phase") == "Failed")
    active = [p for p in pods if not _terminal(p)]
    # With restartPolicy OnFailure a failing container restarts in place; its restarts count.
    failures = failed + sum(_restarts(p) for p in active)
    completions = spec.get("completions")
    deadline = spec.get("activeDeadlineSeconds")
    started = parse_time(status["startTime"])
    if failures > int(spec.get("backoffLimit", 6)):
        _fail(ctx, job, active, "BackoffLimitExceeded", BACKOFF_MESSAGE)
    elif deadline is not None and now - started >= timedelta(seconds=int(deadline)):
        _fail(ctx, job, active, "DeadlineExceeded", DEADLINE_MESSAGE)
    elif (succeeded >= completions if completions is not None
          else succeeded > 0 and not active):
        _complete(ctx, job)
    else:
        remaining = (completions - succeeded) if completions is not None else 1
        want = min(int(spec.get("parallelism", 1)), max(remaining, 0))
        for _ in range(want - len(active)):
            pod = ctx.create(pod_from_template(job, spec["template"]))
            ctx.event(job, "Normal", "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}",
                      component=COMPONENT)
    _count(job, ctx.owned(job, "", "Pod"))
    ctx.write(job)


def _count(job: JSON, pods: list[JSON]) -> None:
    status = job["status"]
    counts = {
        "active": sum(1 for p in pods if not _terminal(p)),
        "succeeded": sum(1 for p in pods if p["status"].get("phase") == "Succeeded"),
        "failed": sum(1 for p in pods if p["status"].get("phase") == "Failed"),
    }
    for key, value in counts.items():
        if value:
            status[key] = value
        else:
            status.pop(key, None)  # omitted when zero, as the API serialises them
    status["ready"] = sum(1 for p in pods if not _terminal(p) and pod_ready(p))
    status["terminating"] = 0
    status["uncountedTerminatedPods"] = {}


def _conditions(ctx: Ctx, job: JSON, reason: str, message: str, *types: str) -> None:
    stamp = ctx.clock.stamp()
    job["status"]["conditions"] = [
        {"type": type_, "status": "True", "reason": reason, "message": message,
         "lastProbeTime": stamp, "lastTransitionTime": stamp}
        for type_ in types
    ]


def _fail(ctx: Ctx, job: JSON, active: list[JSON], reason: str, message: str) -> None:
    for pod in active:
        ctx.delete(pod)
    _conditions(ctx, job, reason, message, "FailureTarget", "Failed")
    ctx.event(job, "Warning", reason, message, component=COMPONENT)


def _complete(ctx: Ctx, job: JSON) -> None:
    _conditions(ctx, job, "CompletionsReached", "Reached expected number of succeeded pods",
                "SuccessCriteriaMet", "Complete")
    job["status"]["completionTime"] = ctx.clock.stamp()
    ctx.event(job, "Normal", "Completed", "Job completed", component=COMPONENT)


def _expire(ctx: Ctx, job: JSON) -> None:
    """ttlSecondsAfterFinished: the TTL controller deletes a finished Job (and its pods)."""
    ttl = job["spec"].get("ttlSecondsAfterFinished")
    if ttl is None:
        return
    cond = _condition(job, "Complete") or _condition(job, "Failed") or {}
    ended = parse_time(job["status"].get("completionTime") or cond.get("lastTransitionTime")
                       or job["metadata"]["creationTimestamp"])
    if ctx.now() - ended >= timedelta(seconds=int(ttl)):
        ctx.delete(job)


# The end of a Job's pod: what the kubelet reports when the container process exits ---------


def _job_of(pod: JSON) -> str | None:
    for ref in pod["metadata"].get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == "Job":
            return str(ref["name"])
    return None


@BUILTINS.for_kind("", "Pod", name="job-pods", order=39)
def reconcile_job_pod(ctx: Ctx, pod: JSON) -> None:
    """Runs before the kubelet: a started Job pod exits 0 on the next tick; one whose Job (or
    pod) a crash-loop script names fails with the script's reason and exit code when its
    restartPolicy is Never (with OnFailure the kubelet's crash loop applies)."""
    if _job_of(pod) is None or _terminal(pod) or not pod["spec"].get("nodeName"):
        return
    namespace = pod["metadata"].get("namespace", "")
    names = workloads_of(pod, lambda *_: None)
    loops = {c["name"]: ctx.scripts.crashloop_for(namespace, names, c["name"])
             for c in pod["spec"]["containers"]}
    failing = {name: loop for name, loop in loops.items() if loop is not None}
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    running = bool(statuses) and all((s.get("state") or {}).get("running") for s in statuses)
    if failing and pod["spec"].get("restartPolicy") == "Never":
        _exit(ctx, pod, failing, starting=not running)
    elif running and not failing:
        _exit(ctx, pod, {}, starting=False)


def _exit(ctx: Ctx, pod: JSON, failing: dict[str, CrashLoop], starting: bool) -> None:
    meta, status = pod["metadata"], pod.setdefault("status", {})
    stamp = ctx.clock.stamp()
    started_at = status.get("startTime") or stamp
    statuses: list[JSON] = []
    for container in pod["spec"]["containers"]:
        name, image = container["name"], container["image"]
        if starting:
            started_events(ctx, pod, name, image)
        loop = failing.get(name)
        container_id = f"containerd://{meta['uid'].replace('-', '')}{len(statuses)}"
        terminated: JSON = {
            "exitCode": loop.exit_code if loop else 0,
            "reason": loop.reason if loop else "Completed",
            "startedAt": started_at, "finishedAt": stamp, "containerID": container_id,
        }
        statuses.append({
            "name": name, "image": image, "imageID": image_id(image),
            "containerID": container_id, "ready": False, "started": False,
            "restartCount": 0, "lastState": {}, "state": {"terminated": terminated},
        })
    phase = "Failed" if failing else "Succeeded"
    why = "PodFailed" if failing else "PodCompleted"
    status["phase"] = phase
    status["containerStatuses"] = statuses
    status["conditions"] = [
        _cond(status, "PodReadyToStartContainers", "False", stamp),
        _cond(status, "Initialized", "True", stamp, why),
        _cond(status, "Ready", "False", stamp, why),
        _cond(status, "ContainersReady", "False", stamp, why),
        _cond(status, "PodScheduled", "True", stamp),
    ]
    ctx.write(pod)


def _cond(status: JSON, type_: str, value: str, stamp: str, reason: str | None = None) -> JSON:
    cond: JSON = {"type": type_, "status": value, "lastProbeTime": None,
                  "lastTransitionTime": stamp}
    for old in status.get("conditions") or []:
        if old.get("type") == type_ and old.get("status") == value:
            cond["lastTransitionTime"] = old.get("lastTransitionTime", stamp)
    if reason:
        cond["reason"] = reason
    return cond
