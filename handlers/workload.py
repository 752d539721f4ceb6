"""Reading and following the workload behind an app (Deployment or StatefulSet), shared by
handlers."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from bot.config import AppConfig
from bot.errors import NotFound, PermanentError
from bot.registry import HandlerContext

__all__ = ["Rollout", "Workload", "read_workload", "selector_string", "wait_for_rollout"]


@dataclass(frozen=True)
class Workload:
    kind: str  # "Deployment" | "StatefulSet"
    name: str
    namespace: str
    obj: Any  # V1Deployment | V1StatefulSet

    @property
    def desired(self) -> int:
        return int(self.obj.spec.replicas if self.obj.spec.replicas is not None else 1)

    @property
    def revision(self) -> str | None:
        if self.kind == "Deployment":
            annotations = self.obj.metadata.annotations or {}
            return annotations.get("deployment.kubernetes.io/revision")
        return self.obj.status.update_revision if self.obj.status else None

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
    name, namespace = app.workload_name, ctx.namespace
    try:
        if app.kind == "StatefulSet":
            obj = await ctx.kube.call(ctx.kube.apps.read_namespaced_stateful_set, name, namespace)
        else:
            obj = await ctx.kube.call(ctx.kube.apps.read_namespaced_deployment, name, namespace)
    except NotFound:
        raise NotFound(
            f"{app.kind} `{name}` does not exist in namespace `{namespace}` "
            f"({ctx.environment.name})"
        ) from None
    return Workload(app.kind, name, namespace, obj)


def selector_string(workload: Workload) -> str:
    labels = workload.obj.spec.selector.match_labels or {}
    if not labels:
        raise PermanentError(f"{workload.kind} `{workload.name}` has no matchLabels selector")
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


@dataclass(frozen=True)
class Rollout:
    done: bool
    message: str
    ready: int
    updated: int
    desired: int
    deadline_exceeded: bool = False


def rollout_state(workload: Workload) -> Rollout:
    """kubectl rollout status semantics for Deployments, and the StatefulSet equivalent."""
    obj, status = workload.obj, workload.obj.status
    desired = workload.desired
    ready = int(status.ready_replicas or 0) if status else 0
    updated = int(status.updated_replicas or 0) if status else 0
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
