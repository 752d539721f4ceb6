"""Deploy and roll back a Deployment or StatefulSet directly, with `kubectl rollout undo` semantics.

Rollback follows kubectl's rollbackers. A Deployment (DeploymentRollbacker): the previous
revision is the second-highest ReplicaSet revision (or the one named), a paused Deployment is
refused, a template that already matches is refused as a no-op, and one JSON patch replaces
`/spec/template` (without `pod-template-hash`) and `/metadata/annotations` (keeping the
Deployment's own revision bookkeeping). A StatefulSet (StatefulSetRollbacker): the same choice
among its ControllerRevisions, and the revision's `data`, the patch the StatefulSet controller
stored (`{"spec": {"template": {..., "$patch": "replace"}}}`), applied as a strategic merge
patch; the controller then re-uses that revision under the next number.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from bot.errors import NotFound, PermanentError, Refused
from bot.kube import client
from bot.registry import HandlerContext
from handlers.deploy.images import resolve_image
from handlers.deploy.plan import Change, Plan
from handlers.deploy.strategy import Progress
from handlers.pods import is_ready
from handlers.workload import Workload, read_workload, rollout_state, selector_string

__all__ = ["STRATEGY", "KubernetesStrategy"]

REVISION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE = "kubernetes.io/change-cause"
HASH_LABEL = "pod-template-hash"
STATEFULSET_REVISION_LABEL = "controller-revision-hash"
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
        workload = await read_workload(ctx)
        if workload.kind == "StatefulSet":
            return await self._plan_statefulset_rollback(ctx, workload, to)
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
                raise Refused(
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
        if plan.action == "rollback" and plan.kind == "StatefulSet":
            raw = await _raw_statefulset(ctx, workload)
            if _template_digest(raw) != plan.details["template_sha256"]:
                raise Refused(
                    f"the template of {plan.target} changed since the plan was made; plan again"
                )
            await ctx.kube.call(
                apps.patch_namespaced_stateful_set, plan.target, plan.namespace,
                plan.details["patch"],
            )
            return f"rolled {plan.target} back to the template of revision {plan.target_revision}"
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
                revision=workload.revision,
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
            summary = f"set {plan.target} back to {previous}"
            stuck = await _delete_stuck_pods(ctx, plan.current_revision)
            if stuck:
                summary += f" and deleted {', '.join(stuck)}, stuck on the failed revision"
            return summary
        undo = await self.plan_rollback(ctx, int(plan.current_revision))
        await self.apply(ctx, undo)
        return f"rolled {plan.target} back to revision {plan.current_revision}"

    async def _plan_statefulset_rollback(
        self, ctx: HandlerContext, workload: Workload, to: int | None
    ) -> Plan:
        """kubectl's StatefulSetRollbacker: StatefulSets have no pause; the target's `data` is
        the strategic merge patch that puts its template back."""
        revisions = await statefulset_revisions(ctx, workload)
        by_number = {int(r.get("revision", 0)): r for r in revisions}
        if to is not None:
            target = by_number.get(to)
            if target is None:
                known = ", ".join(str(n) for n in sorted(by_number)) or "none"
                raise PermanentError(
                    f"revision {to} of {workload.name} is not in its history "
                    f"(known revisions: {known})"
                )
        elif len(revisions) > 1:
            target = revisions[-2]
        else:
            raise Refused(
                f"no rollout history found for {workload.name}: there is no previous revision"
            )
        number = int(target.get("revision", 0))
        data = target.get("data")
        spec = (data.get("spec") if isinstance(data, dict) else None) or {}
        template = spec.get("template") if isinstance(spec, dict) else None
        if not isinstance(template, dict):
            raise PermanentError(
                f"revision {number} of {workload.name} holds no pod template to go back to"
            )
        raw = await _raw_statefulset(ctx, workload)
        current = raw["spec"]["template"]
        if _revision_patch(current) == data:
            raise Refused(
                f"{workload.name} already runs the template of revision {number}; "
                "skipped rollback"
            )
        top = max(by_number)
        running = next(
            (str(n) for n, r in by_number.items() if r["metadata"]["name"] == workload.revision),
            workload.revision or "?",
        )
        after_revision = f"{number} (as revision {top + 1})" if number < top else str(number)
        changes = [Change("revision", running, after_revision)]
        before = {c.get("name"): c.get("image") for c in _containers(current)}
        after = {c.get("name"): c.get("image") for c in _containers(template)}
        changes += [
            Change(f"image ({name})", str(before.get(name) or "none"), str(image))
            for name, image in after.items()
            if before.get(name) != image
        ]
        return self._plan(
            "rollback",
            ctx,
            workload,
            tuple(changes),
            target_revision=str(number),
            details={
                "revision_name": target["metadata"]["name"],
                "patch": data,
                "template_sha256": _template_digest(raw),
            },
        )

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


async def statefulset_revisions(ctx: HandlerContext, workload: Workload) -> list[dict[str, Any]]:
    """The StatefulSet's ControllerRevisions as JSON, oldest first, matched as kubectl's
    controlledHistory does: by selector, then by controller owner uid. Read raw so `data`, the
    patch the controller stored, compares byte for byte as kubectl compares it."""
    response = await ctx.kube.call(
        ctx.kube.apps.list_namespaced_controller_revision,
        workload.namespace,
        label_selector=selector_string(workload),
        _preload_content=False,
    )
    uid = workload.obj.metadata.uid
    owned = [
        item
        for item in json.loads(response.data).get("items") or []
        if any(
            ref.get("uid") == uid and ref.get("controller")
            for ref in item["metadata"].get("ownerReferences") or []
        )
    ]
    return sorted(owned, key=lambda item: int(item.get("revision", 0)))


async def _raw_statefulset(ctx: HandlerContext, workload: Workload) -> dict[str, Any]:
    """The StatefulSet as the API server sent it: the typed client model would drop fields it
    does not know and so could call two different templates equal."""
    response = await ctx.kube.call(
        ctx.kube.apps.read_namespaced_stateful_set,
        workload.name,
        workload.namespace,
        _preload_content=False,
    )
    raw: dict[str, Any] = json.loads(response.data)
    return raw


def _revision_patch(template: dict[str, Any]) -> dict[str, Any]:
    """kubectl's getStatefulSetPatch: what a ControllerRevision of this template holds."""
    return {"spec": {"template": {**template, "$patch": "replace"}}}


def _containers(template: dict[str, Any]) -> list[dict[str, Any]]:
    return list((template.get("spec") or {}).get("containers") or [])


def _template_digest(raw: dict[str, Any]) -> str:
    text = json.dumps(raw["spec"]["template"], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


async def _delete_stuck_pods(
    ctx: HandlerContext, previous_revision: str, *, wait_seconds: float = 30.0
) -> list[str]:
    """Kubernetes' "forced rollback" of a StatefulSet: a pod of the failed revision that never
    became ready blocks the reverted rollout for good (the controller waits for it), so once the
    controller has seen the reverted template, delete such pods; it recreates them from it."""
    deadline = time.monotonic() + wait_seconds
    while True:
        workload = await read_workload(ctx)
        status = workload.obj.status
        generation = workload.obj.metadata.generation or 0
        if status is not None and (status.observed_generation or 0) >= generation:
            break
        if time.monotonic() >= deadline:
            ctx.log.warning("%s did not see the reverted template; no pods deleted", workload.name)
            return []
        await asyncio.sleep(0.5)
    good = status.update_revision or previous_revision
    listed = await ctx.kube.call(
        ctx.kube.core.list_namespaced_pod,
        workload.namespace,
        label_selector=selector_string(workload),
    )
    uid = workload.obj.metadata.uid
    stuck = [
        pod
        for pod in listed.items
        if any(ref.uid == uid for ref in pod.metadata.owner_references or [])
        and (pod.metadata.labels or {}).get(STATEFULSET_REVISION_LABEL) != good
        and pod.metadata.deletion_timestamp is None
        and not is_ready(pod)
    ]
    deleted = []
    for pod in stuck:
        options = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=pod.metadata.uid))
        try:
            await ctx.kube.call(
                ctx.kube.core.delete_namespaced_pod,
                pod.metadata.name,
                workload.namespace,
                body=options,
            )
        except NotFound:
            continue
        ctx.log.warning("deleted pod %s/%s of the failed revision", workload.namespace,
                        pod.metadata.name)
        deleted.append(pod.metadata.name)
    return deleted


def _without_hash(template: dict[str, Any]) -> dict[str, Any]:
    clean = dict(template)
    metadata = dict(clean.get("metadata") or {})
    labels = {k: v for k, v in (metadata.get("labels") or {}).items() if k != HASH_LABEL}
    metadata["labels"] = labels
    metadata.pop("creationTimestamp", None)
    clean["metadata"] = metadata
    return clean


STRATEGY = KubernetesStrategy()
