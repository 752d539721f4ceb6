"""A local stand-in of the Argo CD API server, reached over real HTTP like argocd-server.

It serves the endpoints opsbot uses, with the shapes of Argo CD's application.proto and
v1alpha1 types: `GET /api/v1/applications/{name}`, `POST .../sync`, `POST .../rollback` and
`PATCH .../{name}` (`{"patch": "<json>", "patchType": "merge"}`). Errors come as the gRPC
gateway sends them, `{"error", "code", "message"}` with the HTTP status of the gRPC code, and
with Argo CD's own wording ("rollback cannot be initiated when auto-sync is enabled",
"Cannot sync to X: auto-sync currently set to Y", "another operation is already in progress").

Time is counted in polls: after a sync or rollback the next GET shows the operation Running
(health Progressing), the operation then succeeds after `polls_to_sync` more GETs (a history
entry is appended), and health turns Healthy after `polls_to_healthy` more — or Degraded, or
the operation Failed, when scripted. Revisions are stored as given; real Argo CD records the
resolved commit SHA in history.
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support.slack_standin import ServerThread

__all__ = ["TOKEN", "ArgoCDStandIn", "Call"]

JSON = dict[str, Any]
TOKEN = "argocd-standin-token"
# gRPC codes Argo CD answers with, and the HTTP status grpc-gateway maps them to.
INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION, UNAUTHENTICATED = 3, 5, 9, 16
HTTP_STATUS = {INVALID_ARGUMENT: 400, NOT_FOUND: 404, FAILED_PRECONDITION: 400,
               UNAUTHENTICATED: 401}


@dataclass(frozen=True)
class Call:
    """One request as the stand-in received it."""

    method: str
    path: str
    body: JSON | None
    auth: str | None


@dataclass
class _Operation:
    kind: str  # "sync" | "rollback"
    revision: str
    source: JSON
    polls: int = 0
    completed: bool = False


@dataclass
class _Script:
    degrade: str | None = None  # health message when the app should go Degraded
    fail: str | None = None  # operation message when the sync should fail


class _Refusal(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class ArgoCDStandIn:
    """Applications the test adds, answered as argocd-server would; `start()` to serve."""

    def __init__(self, token: str = TOKEN, *, polls_to_sync: int = 1,
                 polls_to_healthy: int = 2) -> None:
        self.token = token
        self.polls_to_sync = polls_to_sync
        self.polls_to_healthy = polls_to_healthy
        self.apps: dict[str, JSON] = {}
        self.calls: list[Call] = []
        self.on_sync: Callable[[str, str], None] | None = None  # (app, revision) when deployed
        self._ops: dict[str, _Operation] = {}
        self._scripts: dict[str, _Script] = {}
        self._lock = threading.RLock()
        self._rv = itertools.count(1000)
        self._thread: ServerThread | None = None
        self.app_asgi = Starlette(routes=[
            Route("/api/v1/applications/{name}", self._get, methods=["GET"]),
            Route("/api/v1/applications/{name}", self._patch, methods=["PATCH"]),
            Route("/api/v1/applications/{name}/sync", self._sync, methods=["POST"]),
            Route("/api/v1/applications/{name}/rollback", self._rollback, methods=["POST"]),
        ])

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> ArgoCDStandIn:
        self._thread = ServerThread(self.app_asgi, lifespan="off").start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.stop()
            self._thread = None

    @property
    def url(self) -> str:
        assert self._thread is not None, "start() the stand-in first"
        return self._thread.url

    # -- what the test controls ---------------------------------------------------------

    def reset(self) -> None:
        """Forget apps, calls, operations and scripts (a server shared by several tests)."""
        with self._lock:
            self.apps.clear()
            self.calls.clear()
            self._ops.clear()
            self._scripts.clear()
            self.on_sync = None

    def add_app(self, name: str, *, namespace: str = "shop-staging",
                history: tuple[str, ...] = ("1.3.0", "1.4.0"), target_revision: str | None = None,
                auto_sync: bool = False, self_heal: bool = False,
                repo_url: str = "https://git.example.com/shop/deploy.git",
                path: str | None = None, image: str | None = None) -> JSON:
        """An app deployed `history` (oldest first, ids from 0); it tracks `target_revision`
        (default: the last deployed revision, so it starts Synced)."""
        target = target_revision or (history[-1] if history else "HEAD")
        source: JSON = {
            "repoURL": repo_url, "path": path or f"charts/{name}", "targetRevision": target,
            "helm": {"valueFiles": [f"values-{namespace}.yaml"]},
        }
        sync_policy: JSON = {"syncOptions": ["CreateNamespace=false"]}
        if auto_sync:
            sync_policy["automated"] = {"prune": False, "selfHeal": self_heal}
        deployed = history[-1] if history else None
        app: JSON = {
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": name, "namespace": "argocd", "uid": f"uid-{name}",
                         "resourceVersion": str(next(self._rv)), "generation": 1,
                         "creationTimestamp": "2024-01-02T03:04:05Z"},
            "spec": {"project": "default", "source": source,
                     "destination": {"server": "https://kubernetes.default.svc",
                                     "namespace": namespace},
                     "syncPolicy": sync_policy, "revisionHistoryLimit": 10},
            "status": {
                "sync": {"status": "Synced" if deployed == target else "OutOfSync",
                         "revision": target,
                         "comparedTo": {"source": copy.deepcopy(source),
                                        "destination": {"server": "https://kubernetes.default.svc",
                                                        "namespace": namespace}}},
                "health": {"status": "Healthy"},
                "history": [
                    {"id": i, "revision": rev, "deployedAt": f"2024-01-0{i % 9 + 1}T10:00:00Z",
                     "deployStartedAt": f"2024-01-0{i % 9 + 1}T09:59:50Z",
                     "source": {**copy.deepcopy(source), "targetRevision": rev},
                     "initiatedBy": {"username": "admin"}}
                    for i, rev in enumerate(history)
                ],
                "sourceType": "Helm",
                "reconciledAt": _now(),
                "summary": {"images": [f"{image}:{deployed}"] if image and deployed else []},
            },
        }
        if deployed:
            app["status"]["operationState"] = {
                "operation": {"sync": {"revision": deployed, "prune": False},
                              "initiatedBy": {"username": "admin"}, "retry": {}},
                "phase": "Succeeded", "message": "successfully synced (all tasks run)",
                "syncResult": {"revision": deployed, "source": copy.deepcopy(source)},
                "startedAt": "2024-01-01T09:59:50Z", "finishedAt": "2024-01-01T10:00:00Z",
            }
        if image:
            app["metadata"]["annotations"] = {"opsbot.test/image": image}
        with self._lock:
            self.apps[name] = app
        return copy.deepcopy(app)

    def app(self, name: str) -> JSON:
        with self._lock:
            return copy.deepcopy(self.apps[name])

    def set_auto_sync(self, name: str, enabled: bool) -> None:
        with self._lock:
            policy = self.apps[name]["spec"].setdefault("syncPolicy", {})
            if enabled:
                policy["automated"] = {"prune": False, "selfHeal": False}
            else:
                policy.pop("automated", None)

    def script_degrade(self, name: str,
                       message: str = 'Deployment "app" exceeded its progress deadline') -> None:
        """The next sync of `name` succeeds, then the app's health turns Degraded."""
        with self._lock:
            self._scripts.setdefault(name, _Script()).degrade = message

    def script_sync_failure(self, name: str, message: str = (
            "one or more objects failed to apply, reason: admission webhook denied the request")
                            ) -> None:
        """The next sync of `name` ends with operation phase Failed."""
        with self._lock:
            self._scripts.setdefault(name, _Script()).fail = message

    def calls_to(self, method: str, suffix: str = "") -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method and c.path.endswith(suffix)]

    # -- the API ------------------------------------------------------------------------

    async def _get(self, request: Request) -> JSONResponse:
        return await self._serve(request, lambda app, _: self._poll(app))

    async def _sync(self, request: Request) -> JSONResponse:
        return await self._serve(request, self._start_sync)

    async def _rollback(self, request: Request) -> JSONResponse:
        return await self._serve(request, self._start_rollback)

    async def _patch(self, request: Request) -> JSONResponse:
        return await self._serve(request, self._apply_patch)

    async def _serve(self, request: Request, act: Callable[[JSON, JSON], JSON]) -> JSONResponse:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return _error(INVALID_ARGUMENT, "invalid character in request body")
        auth = request.headers.get("authorization")
        name = request.path_params["name"]
        with self._lock:
            self.calls.append(Call(request.method, request.url.path, body, auth))
            if auth is None:
                return _error(UNAUTHENTICATED, "no session information")
            if auth != f"Bearer {self.token}":
                return _error(UNAUTHENTICATED, "invalid session: token signature is invalid")
            app = self.apps.get(name)
            if app is None:
                return _error(NOT_FOUND, f'applications.argoproj.io "{name}" not found')
            try:
                answer = act(app, body if isinstance(body, dict) else {})
            except _Refusal as refusal:
                return _error(refusal.code, refusal.message)
            return JSONResponse(copy.deepcopy(answer))

    def _start_sync(self, app: JSON, body: JSON) -> JSON:
        name = app["metadata"]["name"]
        target = app["spec"]["source"].get("targetRevision") or "HEAD"
        revision = str(body.get("revision") or target)
        automated = (app["spec"].get("syncPolicy") or {}).get("automated")
        if automated and not body.get("dryRun") and revision not in (target, "HEAD"):
            raise _Refusal(FAILED_PRECONDITION,
                           f"Cannot sync to {revision}: auto-sync currently set to {target}")
        self._refuse_if_busy(name)
        if body.get("dryRun"):
            return app
        return self._start(app, _Operation("sync", revision, copy.deepcopy(app["spec"]["source"])))

    def _start_rollback(self, app: JSON, body: JSON) -> JSON:
        name = app["metadata"]["name"]
        if (app["spec"].get("syncPolicy") or {}).get("automated"):
            raise _Refusal(FAILED_PRECONDITION,
                           "rollback cannot be initiated when auto-sync is enabled")
        wanted = body.get("id")
        entry = next((h for h in app["status"].get("history") or [] if h["id"] == wanted), None)
        if entry is None:
            raise _Refusal(INVALID_ARGUMENT,
                           f"application {name} does not have deployment with id {wanted}")
        self._refuse_if_busy(name)
        if body.get("dryRun"):
            return app
        return self._start(app, _Operation("rollback", entry["revision"],
                                           copy.deepcopy(entry["source"])))

    def _apply_patch(self, app: JSON, body: JSON) -> JSON:
        if body.get("patchType", "") != "merge":
            raise _Refusal(INVALID_ARGUMENT, "the stand-in supports merge patches only")
        try:
            patch = json.loads(body.get("patch") or "{}")
        except ValueError as exc:
            raise _Refusal(INVALID_ARGUMENT, f"error calculating merge patch: {exc}") from exc
        patched = merge_patch(app, patch)
        for key in ("metadata", "status", "operation"):  # the server keeps these its own
            if key in app:
                patched[key] = app[key]
        patched["metadata"]["resourceVersion"] = str(next(self._rv))
        if patched["spec"] != app["spec"]:
            patched["metadata"]["generation"] = int(app["metadata"]["generation"]) + 1
        app.clear()
        app.update(patched)
        return app

    def _refuse_if_busy(self, name: str) -> None:
        op = self._ops.get(name)
        if op is not None and not op.completed:
            raise _Refusal(FAILED_PRECONDITION, "another operation is already in progress")

    def _start(self, app: JSON, op: _Operation) -> JSON:
        name = app["metadata"]["name"]
        app["operation"] = {
            "sync": {"revision": op.revision, "prune": False,
                     "syncStrategy": {"hook": {}}, **({"source": op.source}
                                                      if op.kind == "rollback" else {})},
            "initiatedBy": {"username": "opsbot"}, "retry": {},
        }
        app["metadata"]["resourceVersion"] = str(next(self._rv))
        self._ops[name] = op
        return app

    def _poll(self, app: JSON) -> JSON:
        """One look by a client: the simulated controller moves the operation on."""
        name = app["metadata"]["name"]
        op = self._ops.get(name)
        if op is None:
            return app
        op.polls += 1
        status = app["status"]
        if op.polls == 1:  # the controller takes the requested operation
            status["operationState"] = {"operation": app.pop("operation"), "phase": "Running",
                                        "message": "one or more tasks are running",
                                        "startedAt": _now()}
            status["health"] = {"status": "Progressing"}
            status["sync"]["status"] = "OutOfSync"
        elif not op.completed and op.polls >= 1 + self.polls_to_sync:
            self._complete(app, op)
        elif op.completed and op.polls >= 1 + self.polls_to_sync + self.polls_to_healthy:
            script = self._scripts.pop(name, _Script())
            if script.degrade:
                status["health"] = {"status": "Degraded", "message": script.degrade}
            else:
                status["health"] = {"status": "Healthy"}
            del self._ops[name]
        app["metadata"]["resourceVersion"] = str(next(self._rv))
        return app

    def _complete(self, app: JSON, op: _Operation) -> None:
        name = app["metadata"]["name"]
        status = app["status"]
        state = status["operationState"]
        state["finishedAt"] = _now()
        script = self._scripts.get(name, _Script())
        if script.fail:
            state.update(phase="Failed", message=script.fail)
            status["health"] = {"status": "Healthy"}  # the old version keeps running
            self._scripts.pop(name, None)
            del self._ops[name]
            return
        op.completed = True
        state.update(phase="Succeeded", message="successfully synced (all tasks run)",
                     syncResult={"revision": op.revision, "source": op.source, "resources": []})
        history = status.setdefault("history", [])
        history.append({"id": max((h["id"] for h in history), default=-1) + 1,
                        "revision": op.revision, "deployedAt": _now(),
                        "deployStartedAt": state["startedAt"], "source": op.source,
                        "initiatedBy": {"username": "opsbot"}})
        del history[: max(len(history) - int(app["spec"].get("revisionHistoryLimit", 10)), 0)]
        target = app["spec"]["source"].get("targetRevision") or "HEAD"
        status["sync"]["status"] = "Synced" if op.revision == target else "OutOfSync"
        image = (app["metadata"].get("annotations") or {}).get("opsbot.test/image")
        if image:
            status["summary"] = {"images": [f"{image}:{op.revision}"]}
        if self.on_sync is not None:
            self.on_sync(name, op.revision)


def _error(code: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "code": code, "message": message},
                        status_code=HTTP_STATUS[code])
