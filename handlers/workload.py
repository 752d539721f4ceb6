"""Reading, scaling, restarting and following the workload behind an app: its Deployment or
StatefulSet, or for an `argo-rollouts` app its Argo Rollout, so handlers need not know which.

A Rollout's spec and status use the Deployment's names and shapes for all that the handlers
read (replicas, selector, template, paused, minReadySeconds, progressDeadlineSeconds, replica
counts, conditions), so it is read into the same typed model, `V1Deployment`, whose strategy
is then empty. What only a Rollout has (phase, canary step, stable and canary sets, restartAt)
stays on `Workload.rollout`, the Rollout as read. `handlers.deploy.rollouts` is imported where
it is used: the deploy strategies import this module.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot.config import AppConfig
from bot.errors import NotFound, PermanentError
from bot.markup import code
from bot.registry import HandlerContext

if TYPE_CHECKING:
    from handlers.deploy.rollouts import RolloutView

__all__ = [
    "Rollout",
    "Scale",
    "Workload",
    "read_scale",
    "read_workload",
    "restart_workload",
    "rollout_state",
    "selector_string",
    "wait_for_rollout",
    "write_scale",
]

ARGO_ROLLOUTS = "argo-rollouts"  # the deploy strategy whose workload is a Rollout
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


@dataclass(frozen=True)
class Workload:
    kind: str  # "Deployment" | "StatefulSet" | "Rollout"
    name: str
    namespace: str
    obj: Any  # V1Deployment | V1StatefulSet (a Rollout is read as a V1Deployment)
    rollout: RolloutView | None = None  # the Rollout's own fields, for kind "Rollout"

    @property
    def desired(self) -> int:
        return int(self.obj.spec.replicas if self.obj.spec.replicas is not None else 1)

    @property
    def revision(self) -> str | None:
        if self.rollout is not None:
            return self.rollout.revision
        if self.kind == "Deployment":
            annotations = self.obj.metadata.annotations or {}
            return annotations.get("deployment.kubernetes.io/revision")
        return self.obj.status.update_revision if self.obj.status else None

    @property
    def restarts_in_place(self) -> bool:
        """A Rollout's restart evicts pods for their ReplicaSets to recreate: no new revision."""
        return self.rollout is not None

    def images(self) -> list[tuple[str, str]]:
        return [(c.name, c.image) for c in self.obj.spec.template.spec.containers]

    def main_container(self, app: AppConfig) -> Any:
        containers = self.obj.spec.template.spec.containers
        for container in containers:
            if container.name == app.container:
                return container
        return containers[0]


async def read_workload(ctx: HandlerContext, app: AppConfig | None = None) -> Workload:
    app = app or ctx.require_app()
    if app.deploy.strategy == ARGO_ROLLOUTS:
        return await _read_rollout(ctx, app)
    name, namespace = app.workload_name, ctx.namespace
    try:
        if app.kind == "StatefulSet":
            obj = await ctx.kube.call(ctx.kube.apps.read_namespaced_stateful_set, name, namespace)
        else:
            obj = await ctx.kube.call(ctx.kube.apps.read_namespaced_deployment, name, namespace)
    except NotFound:
        raise NotFound(
            f"{app.kind} {code(name)} does not exist in namespace {code(namespace)} "
            f"({ctx.environment.name})"
        ) from None
    return Workload(app.kind, name, namespace, obj)


class _Response:
    """What `ApiClient.deserialize` reads from: an HTTP response's body."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.data = json.dumps(body)


async def _read_rollout(ctx: HandlerContext, app: AppConfig) -> Workload:
    from handlers.deploy.rollouts import read_rollout

    view = await read_rollout(ctx, app)
    if not isinstance(view.spec.get("template"), dict) or not view.spec.get("selector"):
        raise PermanentError(
            f"Rollout {code(view.name)} has no pod template or selector of its own "
            "(a workloadRef Rollout is not supported)"
        )
    try:
        obj = ctx.kube.api_client.deserialize(_Response(view.obj), "V1Deployment")
    except (ValueError, TypeError) as exc:
        raise PermanentError(f"Rollout {code(view.name)} cannot be read: {exc}") from exc
    return Workload("Rollout", view.name, view.namespace, obj, view)


def selector_string(workload: Workload) -> str:
    labels = workload.obj.spec.selector.match_labels or {}
    if not labels:
        raise PermanentError(f"{workload.kind} {code(workload.name)} has no matchLabels selector")
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


@dataclass(frozen=True)
class Scale:
    """A workload's scale subresource as read; written back with its resourceVersion, so a
    concurrent change is a conflict (and a retry), not a lost update."""

    replicas: int
    obj: Any  # V1Scale, or the Rollout's Scale as JSON


async def read_scale(ctx: HandlerContext, workload: Workload) -> Scale:
    name, ns = workload.name, workload.namespace
    if workload.rollout is not None:
        from handlers.deploy.rollouts import GROUP, PLURAL, VERSION

        obj = await ctx.kube.call(ctx.kube.custom.get_namespaced_custom_object_scale,
                                  GROUP, VERSION, ns, PLURAL, name)
        return Scale(int((obj.get("spec") or {}).get("replicas") or 0), obj)
    apps = ctx.kube.apps
    read = (apps.read_namespaced_stateful_set_scale if workload.kind == "StatefulSet"
            else apps.read_namespaced_deployment_scale)
    scale = await ctx.kube.call(read, name, ns)
    return Scale(int(scale.spec.replicas or 0), scale)


async def write_scale(ctx: HandlerContext, workload: Workload, scale: Scale,
                      replicas: int) -> None:
    name, ns = workload.name, workload.namespace
    if workload.rollout is not None:
        from handlers.deploy.rollouts import GROUP, PLURAL, VERSION

        body = {**scale.obj, "spec": {**(scale.obj.get("spec") or {}), "replicas": replicas}}
        await ctx.kube.call(ctx.kube.custom.replace_namespaced_custom_object_scale,
                            GROUP, VERSION, ns, PLURAL, name, body)
        return
    apps = ctx.kube.apps
    replace = (apps.replace_namespaced_stateful_set_scale if workload.kind == "StatefulSet"
               else apps.replace_namespaced_deployment_scale)
    scale.obj.spec.replicas = replicas
    await ctx.kube.call(replace, name, ns, scale.obj)


async def restart_workload(ctx: HandlerContext, workload: Workload, at: str) -> None:
    """Have the controller replace every pod, as kubectl does: a Deployment or StatefulSet gets
    the restartedAt template annotation (a new revision, rolled out); a Rollout gets
    `spec.restartAt` (`kubectl argo rollouts restart`), because a template change would start
    a canary: its controller evicts the pods older than that time instead."""
    name, ns = workload.name, workload.namespace
    if workload.rollout is not None:
        from handlers.deploy.rollouts import GROUP, PLURAL, VERSION

        await ctx.kube.call(ctx.kube.custom.patch_namespaced_custom_object,
                            GROUP, VERSION, ns, PLURAL, name, {"spec": {"restartAt": at}})
        return
    body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: at}}}}}
    apps = ctx.kube.apps
    patch = (apps.patch_namespaced_stateful_set if workload.kind == "StatefulSet"
             else apps.patch_namespaced_deployment)
    await ctx.kube.call(patch, name, ns, body)


@dataclass(frozen=True)
class Rollout:
    done: bool
    message: str
    ready: int
    updated: int
    desired: int
    deadline_exceeded: bool = False


def rollout_state(workload: Workload) -> Rollout:
    """kubectl rollout status semantics for Deployments, the StatefulSet equivalent, and for a
    Rollout its controller's phase."""
    obj, status = workload.obj, workload.obj.status
    desired = workload.desired
    ready = int(status.ready_replicas or 0) if status else 0
    updated = int(status.updated_replicas or 0) if status else 0
    if workload.rollout is not None:
        return _argo_state(workload.rollout, ready, updated, desired)
    if status is None or (status.observed_generation or 0) < (obj.metadata.generation or 0):
        return Rollout(
            False, "waiting for the controller to see the change", ready, updated, desired
        )
    if workload.kind == "Deployment":
        for cond in status.conditions or []:
            if cond.type == "Progressing" and cond.reason == "ProgressDeadlineExceeded":
                return Rollout(
                    False,
                    "progress deadline exceeded",
                    ready,
                    updated,
                    desired,
                    deadline_exceeded=True,
                )
        total = int(status.replicas or 0)
        available = int(status.available_replicas or 0)
        if updated < desired:
            return Rollout(False, f"{updated}/{desired} updated", ready, updated, desired)
        if total > updated:
            return Rollout(
                False, f"{total - updated} old replicas terminating", ready, updated, desired
            )
        if available < updated:
            return Rollout(False, f"{available}/{updated} available", ready, updated, desired)
        return Rollout(True, f"{ready}/{desired} ready", ready, updated, desired)
    if status.update_revision and status.current_revision != status.update_revision:
        return Rollout(False, f"{updated}/{desired} updated", ready, updated, desired)
    if ready < desired:
        return Rollout(False, f"{ready}/{desired} ready", ready, updated, desired)
    return Rollout(True, f"{ready}/{desired} ready", ready, updated, desired)


def _argo_state(view: RolloutView, ready: int, updated: int, desired: int) -> Rollout:
    """Settled once the controller saw the change, any restart is through and every replica is
    available: Healthy, or paused at a canary step, or aborted with the stable set serving
    (both wait for a person, not for the controller). Progressing is not settled."""
    counts = f"{ready}/{desired} ready"
    if not view.observed:
        return Rollout(False, "waiting for the Rollouts controller", ready, updated, desired)
    stuck = any(c.get("reason") == "ProgressDeadlineExceeded"
                for c in view.status.get("conditions") or [])
    if stuck and not view.aborted:
        return Rollout(False, f"Degraded: {view.message}", ready, updated, desired,
                       deadline_exceeded=True)
    restart_at, restarted = view.spec.get("restartAt"), view.status.get("restartedAt")
    if restart_at and (not restarted or _time(restarted) < _time(restart_at)):
        return Rollout(False, "restarting pods", ready, updated, desired)
    if view.available < desired:
        return Rollout(False, f"{view.available}/{desired} available", ready, updated, desired)
    if view.aborted:
        return Rollout(True, f"{counts}; the canary is aborted, the stable version serves",
                       ready, updated, desired)
    if view.paused:
        return Rollout(True, f"{counts}, paused at {view.where()}", ready, updated, desired)
    if view.phase != "Healthy":
        return Rollout(False, f"{view.phase}: {view.message or 'progressing'}", ready, updated,
                       desired)
    return Rollout(True, counts, ready, updated, desired)


def _time(text: str) -> datetime:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))


async def wait_for_rollout(
    ctx: HandlerContext, app: AppConfig, *, timeout: float, interval: float = 0.5
) -> Rollout:
    """Follow the rollout, reporting progress, until done, stalled, or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        state = rollout_state(await read_workload(ctx, app))
        if state.done or state.deadline_exceeded:
            return state
        await ctx.progress(f"rolling out: {state.message}")
        if time.monotonic() >= deadline:
            return state
        await asyncio.sleep(interval)
