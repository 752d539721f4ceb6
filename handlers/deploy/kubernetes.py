"""Deploy and roll back a Deployment or StatefulSet directly, with `kubectl rollout undo` semantics.

Rollback follows kubectl's DeploymentRollbacker: the previous revision is the second-highest
ReplicaSet revision (or the one named), a paused Deployment is refused, a template that
already matches is reported and skipped, and one JSON patch replaces `/spec/template`
(without `pod-template-hash`) and `/metadata/annotations` (keeping the Deployment's own
revision bookkeeping).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.errors import PermanentError, Refused
from bot.registry import HandlerContext
from handlers.deploy.images import resolve_image
from handlers.deploy.plan import Change, Plan
from handlers.deploy.strategy import Progress
from handlers.workload import Workload, read_workload, rollout_state, selector_string

__all__ = ["STRATEGY", "KubernetesStrategy"]

REVISION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE = "kubernetes.io/change-cause"
HASH_LABEL = "pod-template-hash"
# kubectl's annotationsToSkip: the Deployment keeps its own values of these on rollback.
ANNOTATIONS_TO_SKIP = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
)


@dataclass(frozen=True)
class _History:
    latest: Any | None
    previous: Any | None
    by_revision: dict[int, Any]


class KubernetesStrategy:
    name = "kubernetes"

    async def plan_deploy(self, ctx: HandlerContext, image: str) -> Plan:
        app = ctx.require_app()
        workload = await read_workload(ctx)
        container = workload.main_container(app)
        new_image = resolve_image(image, repository=app.image, current=container.image)
        changes = (Change(f"image ({container.name})", container.image, new_image),)
        if container.image == new_image:
            raise Refused(
                f"{app.name} already runs {new_image} in {ctx.environment.name}; nothing to deploy"
            )
        return self._plan(
            "deploy",
            ctx,
            workload,
            changes,
            details={
                "container": container.name,
                "image": new_image,
                "previous_image": container.image,
            },
        )

    async def plan_rollback(
        self, ctx: HandlerContext, to: int | None, *, disable_auto_sync: bool = False
    ) -> Plan:
        app = ctx.require_app()
        workload = await read_workload(ctx)
        if workload.kind != "Deployment":
            raise PermanentError(
                f"rollback of a {workload.kind} is not supported; deploy the previous image "
                f"instead (`history {app.name}` lists them)"
            )
        if workload.obj.spec.paused:
            raise Refused(
                f"you cannot roll back {workload.name}: the Deployment is paused; "
                "resume it first and try again"
            )
        history = await self._history(ctx, workload)
        if to is not None:
            target = history.by_revision.get(to)
            if target is None:
                known = ", ".join(str(r) for r in sorted(history.by_revision)) or "none"
                raise PermanentError(
                    f"revision {to} of {workload.name} is not in its history "
                    f"(known revisions: {known})"
                )
        else:
            target = history.previous
            if target is None:
                raise PermanentError(
                    f"no rollout history found for {workload.name}: there is no previous revision"
                )
        serialize = ctx.kube.api_client.sanitize_for_serialization
        template = serialize(target.spec.template)
        current = serialize(workload.obj.spec.template)
        revision = target.metadata.annotations.get(REVISION)
        if _without_hash(template) == _without_hash(current):
            raise Refused(
                f"{workload.name} already runs the template of revision {revision}; "
                "skipped rollback"
            )
        before = {c.name: c.image for c in workload.obj.spec.template.spec.containers}
        after = {c["name"]: c["image"] for c in template["spec"]["containers"]}
        changes = [Change("revision", workload.revision or "?", f"{revision} (as new revision)")]
        changes += [
            Change(f"image ({name})", before.get(name, "none"), image)
            for name, image in after.items()
            if before.get(name) != image
        ]
        annotations = {
            k: v
            for k, v in (workload.obj.metadata.annotations or {}).items()
            if k in ANNOTATIONS_TO_SKIP
        }
        annotations.update(
            {
                k: v
                for k, v in (target.metadata.annotations or {}).items()
                if k not in ANNOTATIONS_TO_SKIP
            }
        )
        return self._plan(
            "rollback",
            ctx,
            workload,
            tuple(changes),
            target_revision=revision,
            details={"template": _without_hash(template), "annotations": annotations},
        )

    async def apply(self, ctx: HandlerContext, plan: Plan) -> str:
        workload = await read_workload(ctx)
        if workload.revision != plan.current_revision:
            raise Refused(
                f"{plan.target} changed since the plan was made (revision "
                f"{plan.current_revision} → {workload.revision}); plan again"
            )
        apps = ctx.kube.apps
        if plan.action == "rollback":
            patch = [
                {"op": "replace", "path": "/spec/template", "value": plan.details["template"]},
                {
                    "op": "replace",
                    "path": "/metadata/annotations",
                    "value": plan.details["annotations"],
                },
            ]
            await ctx.kube.call(
                apps.patch_namespaced_deployment, plan.target, plan.namespace, patch
            )
            return f"rolled {plan.target} back to the template of revision {plan.target_revision}"
        cause = f"opsbot: deploy {plan.details['image']} by {ctx.actor} ({ctx.execution_id})"
        body = {
            "metadata": {"annotations": {CHANGE_CAUSE: cause}},
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": plan.details["container"], "image": plan.details["image"]}
                        ]
                    }
                }
            },
        }
        patch_fn = (
            apps.patch_namespaced_stateful_set
            if plan.kind == "StatefulSet"
            else apps.patch_namespaced_deployment
        )
        await ctx.kube.call(patch_fn, plan.target, plan.namespace, body)
        return f"set {plan.details['container']} of {plan.target} to {plan.details['image']}"

    async def progress(self, ctx: HandlerContext, plan: Plan) -> Progress:
        workload = await read_workload(ctx)
        state = rollout_state(workload)
        if state.deadline_exceeded:
            return Progress(
                False,
                True,
                f"progress deadline exceeded ({state.ready}/"
                f"{state.desired} ready, {state.updated} updated)",
            )
        return Progress(state.done, False, state.message, revision=workload.revision)

    async def revert(self, ctx: HandlerContext, plan: Plan, reason: str) -> str:
        """Back to the revision that was current before `plan` was applied."""
        if plan.current_revision is None:
            raise PermanentError(f"{plan.target} had no revision before the change")
        if plan.kind == "StatefulSet":
            previous = plan.details.get("previous_image")
            back = await self.plan_deploy(ctx, previous) if previous else None
            if back is None:
                raise PermanentError("nothing to revert to")
            await self.apply(ctx, back)
            return f"set {plan.target} back to {previous}"
        undo = await self.plan_rollback(ctx, int(plan.current_revision))
        await self.apply(ctx, undo)
        return f"rolled {plan.target} back to revision {plan.current_revision}"

    def _plan(
        self,
        action: str,
        ctx: HandlerContext,
        workload: Workload,
        changes: tuple[Change, ...],
        *,
        target_revision: str | None = None,
        details: dict[str, Any],
    ) -> Plan:
        return Plan(
            action=action,  # type: ignore[arg-type]
            strategy="kubernetes",
            app=ctx.require_app().name,
            environment=ctx.environment.name,
            namespace=workload.namespace,
            kind=workload.kind,
            target=workload.name,
            current_revision=workload.revision,
            changes=changes,
            replicas=workload.desired,
            target_revision=target_revision,
            details=details,
        )

    async def _history(self, ctx: HandlerContext, workload: Workload) -> _History:
        replica_sets = await owned_replica_sets(ctx, workload)
        by_revision: dict[int, Any] = {}
        for rs in replica_sets:
            try:
                by_revision[int((rs.metadata.annotations or {}).get(REVISION, ""))] = rs
            except ValueError:
                continue
        ordered = sorted(by_revision)
        latest = by_revision[ordered[-1]] if ordered else None
        previous = by_revision[ordered[-2]] if len(ordered) > 1 else None
        return _History(latest, previous, by_revision)


async def owned_replica_sets(ctx: HandlerContext, workload: Workload) -> list[Any]:
    """ReplicaSets controlled by the Deployment (matched by selector, then by owner uid)."""
    listed = await ctx.kube.call(
        ctx.kube.apps.list_namespaced_replica_set,
        workload.namespace,
        label_selector=selector_string(workload),
    )
    uid = workload.obj.metadata.uid
    return [
        rs
        for rs in listed.items
        if any(ref.uid == uid and ref.controller for ref in rs.metadata.owner_references or [])
    ]


def _without_hash(template: dict[str, Any]) -> dict[str, Any]:
    clean = dict(template)
    metadata = dict(clean.get("metadata") or {})
    labels = {k: v for k, v in (metadata.get("labels") or {}).items() if k != HASH_LABEL}
    metadata["labels"] = labels
    metadata.pop("creationTimestamp", None)
    clean["metadata"] = metadata
    return clean


STRATEGY = KubernetesStrategy()
