"""`incident.job_failed` for KubeJobFailed: the Job's counts, conditions and limits, how its pods
ended (termination reason, exit code, last log lines), and how to run it again, in words."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from pydantic import Field, field_validator

from bot.errors import HandlerError, NotFound
from bot.registry import HandlerContext, Result, handler
from handlers.incident import AlertParams, diagnosis
from handlers.incidents.platform_common import batch_api, check_name, utc

__all__ = ["JobParams", "job_failed"]

_EPOCH = datetime.min.replace(tzinfo=UTC)


class JobParams(AlertParams):
    job_name: str
    log_lines: int = Field(default=10, ge=1, le=200)
    max_pods: int = Field(default=3, ge=1, le=20)  # failed pods whose logs are read

    _job = field_validator("job_name")(lambda v: check_name(v, "job_name"))


@handler("incident.job_failed", params=JobParams)
async def job_failed(*, ctx: HandlerContext, params: JobParams, **_: object) -> Result:
    """Why a Job failed: its conditions, its failed pods' termination reasons and logs."""
    namespace, name = ctx.namespace, params.job_name
    try:
        job = await ctx.kube.call(batch_api(ctx).read_namespaced_job, name, namespace)
    except NotFound:
        return diagnosis(
            what=f"Job {name} does not exist in {namespace}", alert=params.alert, ok=False,
            cause="it was deleted (by hand, by its CronJob's history limit, or by "
                  "ttlSecondsAfterFinished); the alert resolves once kube-state-metrics "
                  "forgets it",
        )
    spec, status = job.spec, job.status
    failed_n, succeeded_n = int(status.failed or 0), int(status.succeeded or 0)
    active_n = int(status.active or 0)
    conditions = {c.type: c for c in status.conditions or [] if c.status == "True"}
    final = conditions.get("Failed")
    cronjob = next((r.name for r in job.metadata.owner_references or []
                    if r.kind == "CronJob"), None)
    pods = await ctx.kube.call(ctx.kube.core.list_namespaced_pod, namespace,
                               label_selector=f"job-name={name}")
    mine = [p for p in pods.items
            if any(r.uid == job.metadata.uid for r in p.metadata.owner_references or [])]
    ends = [end for pod in mine for end in _terminations(pod)]
    failures = [e for e in ends if e["exit_code"] != 0]
    failures.sort(key=lambda e: e["finished"] or e["started"] or _EPOCH, reverse=True)
    await ctx.progress(f"{len(mine)} pods of the Job found; reading logs")
    for end in failures[: params.max_pods]:
        end["log"] = await _log(ctx, namespace, end, params.log_lines)

    if final is None and not failures:
        what = f"Job {name} in {namespace} has not failed"
        state = "complete" if "Complete" in conditions else f"{active_n} active"
        cause = f"it is {state}, {failed_n} failed pods so far; the alert may be stale"
    else:
        what = f"Job {name} in {namespace} failed"
        if final is not None and final.reason:
            what += f" ({final.reason})"
        cause = _cause(spec, final, failures, len(mine), failed_n)
    rerun = _rerun(namespace, name, cronjob)
    evidence = [
        ("Pods", f"{failed_n} failed, {succeeded_n} succeeded, {active_n} active "
                 f"(backoffLimit {spec.backoff_limit}, completions {spec.completions})"),
        ("Conditions", ", ".join(f"{t}: {c.reason or ''} {c.message or ''}".strip()
                                 for t, c in conditions.items()) or "none"),
    ]
    if spec.active_deadline_seconds:
        evidence.append(("Deadline", f"activeDeadlineSeconds {spec.active_deadline_seconds}"))
    if cronjob:
        evidence.append(("CronJob", cronjob))
    if failures:
        top = failures[0]
        evidence.append(("Last failure", _end_text(top)))
        if top.get("log"):
            evidence.append(("Last log line", top["log"].splitlines()[-1][:300]))
    evidence.append(("Re-run", rerun))
    output = _details(mine, failures)
    since = utc(final.last_transition_time) if final is not None else None
    return diagnosis(
        what=what, cause=cause, alert=params.alert, since=None if params.alert else since,
        evidence=evidence, output=output,
        data={"job": name, "failed": failed_n, "succeeded": succeeded_n, "active": active_n,
              "reason": final.reason if final is not None else None, "cronjob": cronjob,
              "rerun": rerun,
              "terminations": [{k: v for k, v in e.items() if k not in ("started", "finished")}
                               for e in failures[: params.max_pods]]},
    )


def _terminations(pod: Any) -> list[dict[str, Any]]:
    out = []
    for cs in (pod.status.container_statuses or []) if pod.status else []:
        state = cs.state.terminated if cs.state else None
        previous = False
        if state is None and cs.last_state and cs.last_state.terminated:
            state, previous = cs.last_state.terminated, True
        if state is None:
            continue
        out.append({
            "pod": pod.metadata.name, "container": cs.name, "reason": state.reason,
            "exit_code": int(state.exit_code if state.exit_code is not None else -1),
            "message": state.message, "started": utc(state.started_at),
            "finished": utc(state.finished_at), "previous": previous,
            "restarts": int(cs.restart_count or 0),
        })
    return out


async def _log(ctx: HandlerContext, namespace: str, end: dict[str, Any], lines: int) -> str | None:
    try:
        text = await ctx.kube.call(
            ctx.kube.core.read_namespaced_pod_log, end["pod"], namespace,
            container=end["container"], previous=end["previous"], tail_lines=lines)
    except HandlerError as exc:
        return f"(log unavailable: {exc})"
    return str(text).rstrip() or None


def _cause(spec: Any, final: Any, failures: list[dict[str, Any]], pods: int,
           failed: int) -> str:
    if final is not None and final.reason == "DeadlineExceeded":
        return (f"it ran longer than activeDeadlineSeconds ({spec.active_deadline_seconds} s) "
                "and was stopped")
    if not failures:
        if pods == 0:
            return (f"{failed} pods failed, but they are gone (deleted or garbage-collected), "
                    "so their exit reasons are unknown")
        return final.message if final is not None and final.message else "unknown"
    reasons = Counter((e["reason"] or "Error", e["exit_code"]) for e in failures)
    (reason, code), times = reasons.most_common(1)[0]
    attempts = f"all {failed} attempts" if final is not None else f"{times} attempts"
    if reason == "OOMKilled":
        what = "were killed for running out of memory (OOMKilled)"
    elif reason == "DeadlineExceeded":
        what = "ran past their deadline"
    else:
        what = f"exited with code {code} ({reason})"
    text = f"{attempts} {what}"
    last = next((e.get("log") for e in failures if e.get("log")), None)
    if last and not last.startswith("(log unavailable"):
        text += f"; last log line: {last.splitlines()[-1].strip()[:160]}"
    if final is not None and final.reason == "BackoffLimitExceeded":
        text += f"; backoffLimit {spec.backoff_limit} reached"
    return text


def _end_text(end: dict[str, Any]) -> str:
    text = (f"{end['pod']}/{end['container']}: {end['reason'] or 'Error'}, "
            f"exit code {end['exit_code']}")
    if end.get("message"):
        text += f", {str(end['message']).strip()[:200]}"
    return text


def _rerun(namespace: str, name: str, cronjob: str | None) -> str:
    if cronjob:
        return (f"after fixing the cause: kubectl -n {namespace} create job "
                f"{cronjob}-retry --from=cronjob/{cronjob}")
    return (f"after fixing the cause, re-create it from its manifest: kubectl -n {namespace} "
            f"delete job {name}, then apply the manifest again")


def _details(pods: list[Any], failures: list[dict[str, Any]]) -> str:
    lines = ["PODS"]
    for pod in sorted(pods, key=lambda p: p.metadata.name):
        phase = pod.status.phase if pod.status else "Unknown"
        lines.append(f"  {pod.metadata.name}  {phase}")
    for end in failures:
        if end.get("log"):
            lines.append("")
            lines.append(f"LOG {end['pod']}/{end['container']} (last lines)")
            lines.extend(f"  {line}" for line in str(end["log"]).splitlines())
    return "\n".join(lines)
