"""The `argo-rollouts` strategy: deploys change the image in an Argo Rollout's pod template and
the Rollouts controller walks its canary steps; rollbacks restore an earlier ReplicaSet's
template (`kubectl argo rollouts undo`) and a revert aborts the canary.

All writes go through the real client's CustomObjectsApi, whose patch methods send
`application/merge-patch+json` whatever the body (kubernetes 35 client): lists in a merge
patch replace the whole list, so image patches send every container, and each patch carries
`metadata.resourceVersion` so a concurrent change is a 409 (a retry re-reads) rather than a
lost update.

The pre-deploy health check (`health`, through `handlers/deploy/strategy.py`) reads the same
Rollout, so an argo-rollouts app needs no Deployment of its name.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Literal

from bot.config import AppConfig
from bot.errors import NotFound, PermanentError, Refused, RetryableError
from bot.markup import code
from bot.registry import HandlerContext
from handlers.deploy.images import resolve_image
from handlers.deploy.plan import Change, Plan
from handlers.deploy.strategy import Health, Progress

__all__ = [
    "STRATEGY",
    "RolloutView",
    "RolloutsStrategy",
    "abort_rollout",
    "describe",
    "merge_diff",
    "read_rollout",
    "replica_sets",
    "rollout_health",
    "rollout_name",
    "rollout_progress",
]

GROUP, VERSION, PLURAL = "argoproj.io", "v1alpha1", "rollouts"
_CONFLICT_ATTEMPTS = 5  # a revert re-reads and retries while the controller acts on the abort
HASH_LABEL = "rollouts-pod-template-hash"
REVISION = "rollout.argoproj.io/revision"
JSON = dict[str, Any]


def rollout_name(app: AppConfig) -> str:
    return app.deploy.rollout or app.workload_name


@dataclass(frozen=True)
class RolloutView:
    """An Argo Rollout as read from the API (`obj` is its JSON), with the fields we act on."""

    obj: JSON

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.obj["metadata"].get("namespace", ""))

    @property
    def spec(self) -> JSON:
        spec: JSON = self.obj.get("spec") or {}
        return spec

    @property
    def status(self) -> JSON:
        status: JSON = self.obj.get("status") or {}
        return status

    @property
    def resource_version(self) -> str:
        return str(self.obj["metadata"].get("resourceVersion", ""))

    @property
    def observed(self) -> bool:
        """The controller has seen the latest spec (observedGeneration is a string here)."""
        generation = str(self.obj["metadata"].get("generation", ""))
        return str(self.status.get("observedGeneration", "")) == generation

    @property
    def phase(self) -> str:
        return str(self.status.get("phase") or "Unknown")

    @property
    def message(self) -> str:
        return str(self.status.get("message") or "")

    @property
    def revision(self) -> str | None:
        value = (self.obj["metadata"].get("annotations") or {}).get(REVISION)
        return str(value) if value else None

    @property
    def replicas(self) -> int:
        return int(self.spec.get("replicas", 1))

    @property
    def available(self) -> int:
        return int(self.status.get("availableReplicas", 0))

    @property
    def steps(self) -> list[JSON]:
        canary = (self.spec.get("strategy") or {}).get("canary") or {}
        return [s for s in canary.get("steps") or [] if isinstance(s, dict)]

    @property
    def step_index(self) -> int:
        return int(self.status.get("currentStepIndex", len(self.steps)))

    @property
    def weight(self) -> int:
        """The canary weight the current step sets (100 once every step is done)."""
        steps, index = self.steps, self.step_index
        if index >= len(steps):
            return 100
        for step in reversed(steps[: index + 1]):
            if "setWeight" in step:
                return int(step["setWeight"])
        return 0

    @property
    def stable_hash(self) -> str | None:
        value = self.status.get("stableRS")
        return str(value) if value else None

    @property
    def current_hash(self) -> str | None:
        value = self.status.get("currentPodHash")
        return str(value) if value else None

    @property
    def fully_promoted(self) -> bool:
        return self.stable_hash is not None and self.stable_hash == self.current_hash

    @property
    def aborted(self) -> bool:
        return bool(self.status.get("abort"))

    @property
    def pause_reasons(self) -> list[str]:
        return [str(p.get("reason")) for p in self.status.get("pauseConditions") or []]

    @property
    def paused(self) -> bool:
        return bool(self.pause_reasons) or bool(self.spec.get("paused"))

    @property
    def containers(self) -> list[JSON]:
        containers: list[JSON] = (self.spec.get("template") or {}).get("spec", {}).get(
            "containers"
        ) or []
        return containers

    def container(self, app: AppConfig) -> JSON:
        containers = self.containers
        if not containers:
            raise PermanentError(f"Rollout {code(self.name)} has no containers in its template")
        return next((c for c in containers if c.get("name") == app.container), containers[0])

    def where(self) -> str:
        """`step 2/4 (canary weight 20%)`, or `manually paused`."""
        if self.spec.get("paused") and not self.pause_reasons:
            return "manually paused"
        return f"step {min(self.step_index + 1, len(self.steps))}/{len(self.steps)} " \
            f"(canary weight {self.weight}%)"


async def read_rollout(ctx: HandlerContext, app: AppConfig | None = None) -> RolloutView:
    app = app or ctx.require_app()
    name = rollout_name(app)
    try:
        obj = await ctx.kube.call(
            ctx.kube.custom.get_namespaced_custom_object,
            GROUP,
            VERSION,
            ctx.namespace,
            PLURAL,
            name,
        )
    except NotFound:
        raise NotFound(
            f"Rollout {code(name)} does not exist in namespace {code(ctx.namespace)} "
            f"({ctx.environment.name})"
        ) from None
    return RolloutView(obj)


async def replica_sets(ctx: HandlerContext, view: RolloutView) -> dict[int, JSON]:
    """The Rollout's ReplicaSets (as JSON) by their rollout revision."""
    labels = (view.spec.get("selector") or {}).get("matchLabels") or {}
    selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    found = await ctx.kube.call(
        ctx.kube.apps.list_namespaced_replica_set, view.namespace, label_selector=selector
    )
    uid = view.obj["metadata"].get("uid")
    out: dict[int, JSON] = {}
    for item in found.items:
        rs: JSON = ctx.kube.api_client.sanitize_for_serialization(item)
        refs = rs["metadata"].get("ownerReferences") or []
        if not any(r.get("uid") == uid and r.get("controller") for r in refs):
            continue
        try:
            out[int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))] = rs
        except ValueError:
            continue
    return out


def rs_hash(rs: JSON) -> str | None:
    value = (rs["metadata"].get("labels") or {}).get(HASH_LABEL)
    return str(value) if value else None


def rs_image(rs: JSON, app: AppConfig) -> str:
    containers = rs["spec"]["template"]["spec"]["containers"]
    match = next((c for c in containers if c.get("name") == app.container), containers[0])
    return str(match.get("image", ""))


def merge_diff(current: Any, target: Any) -> Any:
    """The JSON merge patch (RFC 7386) that turns `current` into `target`."""
    if not (isinstance(current, dict) and isinstance(target, dict)):
        return target
    patch: JSON = {key: None for key in current if key not in target}
    for key, value in target.items():
        if key not in current:
            patch[key] = value
        elif current[key] != value:
            patch[key] = merge_diff(current[key], value)
    return patch


class RolloutsStrategy:
    """Plans, applies, follows and reverts deploys of an Argo Rollout (canary)."""

    name = "argo-rollouts"

    async def plan_deploy(self, ctx: HandlerContext, image: str) -> Plan:
        app = ctx.require_app()
        view = await read_rollout(ctx, app)
        if not view.fully_promoted and not view.aborted:
            # promote only moves a paused canary on; a stuck or Degraded one can only be aborted.
            paused = view.phase == "Paused"
            way = "promote or abort it" if paused else "abort it"
            raise Refused(
                f"Rollout {code(view.name)} is in the middle of a canary ({view.where()}, "
                f"{view.phase}): {way} before deploying again",
                hint=(f"{code(f'promote {app.name}')} or {code(f'abort {app.name}')}" if paused
                      else code(f'abort {app.name}')),
            )
        container = view.container(app)
        before = str(container.get("image", ""))
        after = resolve_image(image.strip(), repository=app.image, current=before)
        if after == before:
            raise Refused(
                f"{app.name} already runs {after} in {ctx.environment.name}; nothing to deploy"
            )
        return self._plan(
            ctx,
            view,
            "deploy",
            changes=(Change(f"image ({container['name']})", before, after),),
            details={"container": container["name"], "image": after, "previous_image": before},
        )

    async def plan_rollback(
        self, ctx: HandlerContext, to: int | None, *, disable_auto_sync: bool = False
    ) -> Plan:
        """`to` is a rollout revision (`rollout.argoproj.io/revision` of its ReplicaSets);
        the default is the one before the current. `disable_auto_sync` concerns Argo CD only."""
        app = ctx.require_app()
        view = await read_rollout(ctx, app)
        sets = await replica_sets(ctx, view)
        current = next((n for n, rs in sets.items() if rs_hash(rs) == view.current_hash), None)
        if to is None:
            older = sorted(n for n in sets if current is None or n < current)
            if not older:
                raise Refused(f"Rollout {code(view.name)} has no earlier revision to roll back to")
            to = older[-1]
        if to not in sets:
            known = ", ".join(str(n) for n in sorted(sets)) or "none"
            raise PermanentError(
                f"Rollout {code(view.name)} has no revision {to} (revisions: {known})"
            )
        container = view.container(app)
        before = str(container.get("image", ""))
        target = sets[to]
        if rs_hash(target) == view.current_hash:
            raise Refused(
                f"Rollout {code(view.name)} already runs the template of revision {to}; "
                "nothing to roll back"
            )
        return self._plan(
            ctx,
            view,
            "rollback",
            changes=(
                Change(f"image ({container['name']})", before, rs_image(target, app)),
                Change("revision", str(current or view.revision), str(to)),
            ),
            details={
                "container": container["name"],
                "image": rs_image(target, app),
                "previous_image": before,
                "to_revision": to,
                "to_hash": rs_hash(target),
            },
            target_revision=str(to),
        )

    def _plan(
        self,
        ctx: HandlerContext,
        view: RolloutView,
        action: Literal["deploy", "rollback"],
        *,
        changes: tuple[Change, ...],
        details: JSON,
        target_revision: str | None = None,
    ) -> Plan:
        return Plan(
            action=action,
            strategy="argo-rollouts",
            app=ctx.require_app().name,
            environment=ctx.environment.name,
            namespace=view.namespace,
            kind="Rollout",
            target=view.name,
            current_revision=view.revision,
            changes=changes,
            replicas=view.replicas,
            target_revision=target_revision,
            details={
                "rollout": view.name,
                "steps": len(view.steps),
                "stable_hash": view.stable_hash,
                "pod_hash": view.current_hash,
                **details,
            },
        )

    async def apply(self, ctx: HandlerContext, plan: Plan) -> str:
        if ctx.dry_run:
            raise PermanentError("apply must not run in a dry run")
        app = ctx.require_app()
        view = await read_rollout(ctx, app)
        if plan.action == "deploy":
            return await self._set_image(ctx, app, view, plan)
        sets = await replica_sets(ctx, view)
        target = sets.get(int(plan.details["to_revision"]))
        if target is None or rs_hash(target) != plan.details["to_hash"]:
            raise PermanentError(
                f"revision {plan.details['to_revision']} of Rollout {code(view.name)} is gone or "
                "changed since this plan was made; plan again"
            )
        await self._restore(ctx, view, target)
        return (
            f"rolled {view.name} back to revision {plan.details['to_revision']} "
            f"({plan.details['image']})"
        )

    async def _set_image(
        self, ctx: HandlerContext, app: AppConfig, view: RolloutView, plan: Plan
    ) -> str:
        name, wanted = str(plan.details["container"]), str(plan.details["image"])
        containers = [dict(c) for c in view.containers]
        match = next((c for c in containers if c.get("name") == name), None)
        if match is None:
            raise PermanentError(
                f"Rollout {code(view.name)} has no container {code(name)} any more")
        if match.get("image") not in (plan.details["previous_image"], wanted):
            raise PermanentError(
                f"the image of {code(name)} in Rollout {code(view.name)} changed since this plan "
                f"was made (now {match.get('image')}); plan again"
            )
        match["image"] = wanted
        body = {
            "metadata": {"resourceVersion": view.resource_version},
            "spec": {"template": {"spec": {"containers": containers}}},
        }
        await self._patch(ctx, view, body)
        ctx.log.info("rollouts: %s/%s image %s set to %s", view.namespace, view.name, name, wanted)
        return f"set the image of {view.name} ({name}) to {wanted}; the canary starts"

    async def _restore(self, ctx: HandlerContext, view: RolloutView, rs: JSON) -> None:
        """`kubectl argo rollouts undo`: the ReplicaSet's template, hash label removed."""
        template = dict(rs["spec"]["template"])
        metadata = dict(template.get("metadata") or {})
        labels = {k: v for k, v in (metadata.get("labels") or {}).items() if k != HASH_LABEL}
        template["metadata"] = {**metadata, "labels": labels}
        body = {
            "metadata": {"resourceVersion": view.resource_version},
            "spec": {"template": merge_diff(view.spec.get("template") or {}, template)},
        }
        await self._patch(ctx, view, body)
        ctx.log.info("rollouts: %s/%s template restored from %s", view.namespace, view.name,
                     rs["metadata"]["name"])

    async def _patch(self, ctx: HandlerContext, view: RolloutView, body: JSON) -> None:
        await ctx.kube.call(
            ctx.kube.custom.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            view.namespace,
            PLURAL,
            view.name,
            body,
        )

    async def progress(self, ctx: HandlerContext, plan: Plan) -> Progress:
        """Where the Rollout stands now: after a deploy, a rollback, or the revert of one."""
        return rollout_progress(await read_rollout(ctx))

    async def health(self, ctx: HandlerContext, app: AppConfig) -> Health:
        return rollout_health(await read_rollout(ctx, app))

    async def pod_labels(self, ctx: HandlerContext, app: AppConfig) -> dict[str, str]:
        view = await read_rollout(ctx, app)
        labels = (view.spec.get("selector") or {}).get("matchLabels") or {}
        if not labels:
            raise PermanentError(f"Rollout {code(view.name)} has no matchLabels selector")
        return {str(k): str(v) for k, v in labels.items()}

    async def revert(self, ctx: HandlerContext, plan: Plan, reason: str) -> str:
        """Abort the canary, then restore the template the Rollout ran before `plan` (the
        stable one while a canary runs), so it ends Healthy on the old version rather than
        Degraded; a fully promoted change goes back with the remaining steps skipped."""
        app = ctx.require_app()
        view = await read_rollout(ctx, app)
        sets = await replica_sets(ctx, view)
        wanted = view.stable_hash if not view.fully_promoted else plan.details.get("pod_hash")
        before = next((rs for rs in sets.values() if rs_hash(rs) == wanted), None)
        if before is None:
            raise PermanentError(f"cannot revert {view.name}: the ReplicaSet it ran before is gone")
        if not view.fully_promoted and not view.aborted:
            await abort_rollout(ctx, view)
            view = await read_rollout(ctx, app)
        for attempt in range(_CONFLICT_ATTEMPTS):
            if rs_hash(before) == view.current_hash:
                break
            try:
                await self._restore(ctx, view, before)
                break
            except RetryableError as exc:
                # The controller is still acting on the abort: read again, restore again.
                if not str(exc).startswith("conflict") or attempt == _CONFLICT_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(exc.delay)
                view = await read_rollout(ctx, app)
        if view.fully_promoted and rs_hash(before) != view.current_hash:
            await _status_patch(ctx, view, {"promoteFull": True})
        how = f"{view.name} back to revision {_number(sets, before)} ({rs_image(before, app)})"
        ctx.log.warning("rollouts: reverted %s after: %s", how, reason)
        return f"aborted and rolled {how}"


def _number(sets: dict[int, JSON], rs: JSON) -> int:
    return next(n for n, candidate in sets.items() if candidate is rs)


async def _status_patch(ctx: HandlerContext, view: RolloutView, status: JSON) -> None:
    await ctx.kube.call(
        ctx.kube.custom.patch_namespaced_custom_object_status,
        GROUP,
        VERSION,
        view.namespace,
        PLURAL,
        view.name,
        {"status": status},
    )


async def abort_rollout(ctx: HandlerContext, view: RolloutView) -> None:
    """What `kubectl argo rollouts abort` sends: `status.abort: true` on the status."""
    await _status_patch(ctx, view, {"abort": True})


def describe(view: RolloutView) -> str:
    """One line on where a rollout stands."""
    counts = f"{view.available}/{view.replicas} available"
    if view.aborted:
        return f"{view.name} is aborted ({view.phase}): the stable set serves, {counts}"
    if view.phase == "Healthy":
        return f"{view.name} is Healthy, {counts}, revision {view.revision}"
    if view.paused:
        return f"{view.name} is paused at {view.where()}"
    detail = f": {view.message}" if view.message else ""
    return f"{view.name} is {view.phase}{detail}"


def rollout_progress(view: RolloutView) -> Progress:
    """Healthy is done; a canary pause is done too, waiting for a person to promote or abort;
    aborted or Degraded is failed."""
    revision = view.revision
    if not view.observed:
        return Progress(False, False, f"{view.name}: waiting for the Rollouts controller")
    if view.aborted or view.phase == "Degraded":
        return Progress(False, True, f"{view.name} is {view.phase}: {view.message}", revision)
    if view.paused:
        return Progress(
            True, False, f"{view.name} is paused at {view.where()}: promote or abort", revision
        )
    if view.phase == "Healthy" and view.fully_promoted:
        return Progress(True, False, describe(view), revision)
    return Progress(False, False, describe(view), revision)


def rollout_health(view: RolloutView) -> Health:
    """Healthy and fully promoted with every replica available. An aborted canary whose stable
    set serves every replica passes too: deploying a fix is one of the two ways out of it (the
    other is a rollback). A canary paused at a step is a decision still open, not a health."""
    target, counts = f"Rollout {view.name}", f"{view.available}/{view.replicas} available"
    if not view.observed:
        return Health(False, target, "the Rollouts controller has not seen its latest change")
    if view.aborted:
        return Health(view.available >= view.replicas, target,
                      f"aborted, its stable version serves: {counts}")
    if view.phase == "Degraded":
        return Health(False, target, f"Degraded, {counts}: {view.message}")
    detail = f": {view.message}" if view.message else ""
    if not view.fully_promoted:
        if view.pause_reasons:
            return Health(False, target,
                          f"a canary is paused at {view.where()}: promote or abort it")
        if view.paused:
            return Health(False, target, "a canary is manually paused: promote or abort it")
        at = f"a canary is in progress at {view.where()}" if view.steps \
            else "a new version is rolling out"
        return Health(False, target, f"{at}, {view.phase}{detail}")
    if view.phase != "Healthy" or view.available < view.replicas:
        return Health(False, target, f"{view.phase}, {counts}{detail}")
    return Health(True, target, f"Healthy, {counts}")


STRATEGY = RolloutsStrategy()
