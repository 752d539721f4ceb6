"""The `/_sim/` admin surface (same bearer token): script faults and workload behaviour,
read a snapshot, wait for convergence or move the clock of an out-of-process simcluster."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .dispatch import Request, Response
from .errors import ApiError, bad_request
from .traffic import CONTENT_TYPE
from .velero import DEFAULT_FAILURE, parse_outcome
from .velero import NAMESPACE as VELERO_NAMESPACE

if TYPE_CHECKING:
    from .cluster import SimCluster

JSON = dict[str, Any]


def _body(request: Request) -> JSON:
    payload = request.json()
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise bad_request("admin requests take a JSON object")
    return payload


def _required(body: JSON, *names: str) -> list[Any]:
    missing = [n for n in names if n not in body]
    if missing:
        raise bad_request(f"missing field(s): {', '.join(missing)}")
    return [body[n] for n in names]


def _number(body: JSON, name: str) -> float:
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_request(f"{name} must be a number")
    return float(value)


def _script_outcome(sim: SimCluster, request: Request) -> Response:
    body = _body(request)
    prefix, outcome = _required(body, "name_prefix", "outcome")
    options = {k: body[k] for k in ("errors", "warnings") if k in body}
    kind = "backup" if request.path.rstrip("/").endswith("backup-outcome") else "restore"
    script = sim.script_backup if kind == "backup" else sim.script_restore
    try:
        script(str(prefix), parse_outcome(outcome), **options,
               failure_reason=str(body.get("failure_reason", DEFAULT_FAILURE)))
    except ValueError as exc:
        raise bad_request(str(exc)) from exc
    return Response.of({"scripted": f"{kind}-outcome"}, 201)


def handle(sim: SimCluster, request: Request) -> Response:
    route = (request.method, request.path.rstrip("/"))
    if route == ("GET", "/_sim/snapshot"):
        return Response.of(sim.snapshot())
    if route == ("GET", "/_sim/faults"):
        return Response.of({"faults": [h.describe() for h in sim.faults.list()]})
    if route == ("POST", "/_sim/faults"):
        body = _body(request)
        handle_ = sim.faults.inject(
            method=body.get("method"), path=body.get("path", ".*"),
            status=body.get("status", 500), times=body.get("times", 1),
            delay_seconds=float(body.get("delay_seconds", 0.0)), message=body.get("message"))
        return Response.of(handle_.describe(), 201)
    if route == ("DELETE", "/_sim/faults"):
        sim.faults.clear()
        return Response.of({"cleared": True})
    if route == ("POST", "/_sim/crashloop"):
        body = _body(request)
        workload = body.get("workload_name", body.get("workload"))
        namespace, container = _required(body, "namespace", "container")
        if not workload:
            raise bad_request("missing field(s): workload_name")
        options = {k: body[k] for k in ("reason", "exit_code", "restarts", "log", "over_minutes")
                   if k in body}
        sim.script_crashloop(namespace, workload, container, **options)
        return Response.of({"scripted": "crashloop"}, 201)
    if route == ("POST", "/_sim/image-pull-error"):
        (substring,) = _required(_body(request), "image_substring")
        sim.script_image_pull_error(substring)
        return Response.of({"scripted": "image-pull-error"}, 201)
    if route == ("POST", "/_sim/never-ready"):
        body = _body(request)
        workload = body.get("workload_name", body.get("workload"))
        (namespace,) = _required(body, "namespace")
        sim.script_never_ready(namespace, str(workload))
        return Response.of({"scripted": "never-ready"}, 201)
    if route == ("POST", "/_sim/cpu-utilization"):
        body = _body(request)
        namespace, workload, percent = _required(body, "namespace", "workload_name", "percent")
        try:
            sim.script_cpu_utilization(str(namespace), str(workload), percent)
        except ValueError as exc:
            raise bad_request(str(exc)) from exc
        return Response.of({"scripted": "cpu-utilization"}, 201)
    if route == ("GET", "/_sim/metrics"):
        return Response(200, sim.metrics_text().encode(), CONTENT_TYPE)
    if route == ("POST", "/_sim/traffic"):
        body = _body(request)
        (substring,) = _required(body, "image_substring")
        shape = {k: _number(body, k) for k in ("error_ratio", "p99_seconds") if k in body}
        try:
            sim.script_traffic(str(substring), **shape)
        except ValueError as exc:
            raise bad_request(str(exc)) from exc
        return Response.of({"scripted": "traffic"}, 201)
    if route in (("POST", "/_sim/backup-outcome"), ("POST", "/_sim/restore-outcome")):
        return _script_outcome(sim, request)
    if route == ("POST", "/_sim/run-schedule"):
        body = _body(request)
        (name,) = _required(body, "name")
        try:
            backup = sim.run_schedule(str(body.get("namespace", VELERO_NAMESPACE)), str(name))
        except LookupError as exc:
            raise ApiError(404, str(exc.args[0])) from exc
        except ValueError as exc:
            raise bad_request(str(exc)) from exc
        if backup is None:
            return Response.of({"backup": None, "skipped": "a backup of the schedule is still "
                                                           "New or InProgress"})
        return Response.of({"backup": backup}, 201)
    if route == ("DELETE", "/_sim/scripts"):
        sim.clear_scripts()
        return Response.of({"cleared": True})
    if route == ("POST", "/_sim/wait-idle"):
        timeout = float(_body(request).get("timeout", 5.0))
        try:
            sim.wait_idle(timeout)
        except TimeoutError as exc:
            raise ApiError(504, str(exc)) from exc
        return Response.of({"idle": True})
    if route == ("POST", "/_sim/advance"):
        (seconds,) = _required(_body(request), "seconds")
        sim.advance(float(seconds))
        return Response.of({"offset_seconds": sim.clock.offset_seconds})
    raise ApiError(404, f"no admin endpoint {request.method} {request.path}", details={})
