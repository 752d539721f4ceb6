"""`deploy.prechecks`: before a deploy, refuse while a critical alert fires for the app or its
workload is not healthy, so a release is not piled onto an incident. Read-only.

A check the deploy wants that cannot run (the alert check without Alertmanager, or one it cannot
reach; Verify without Prometheus or without metrics) is shown as not checked, never as passed;
where the environment refuses unchecked deploys (by default, where it requires approval), the
deploy is refused here, before anything changes.

What "the workload" is depends on the app's deploy strategy (a Deployment or StatefulSet, or an
Argo Rollout), so health is asked of the strategy rather than read here.

Given the deploy's plan, it also checks the new image (handlers/deploy/gate.py): that its
registry has the manifest, and that Trivy Operator's findings for it are within the
environment's limits."""

from __future__ import annotations

from typing import Any

from bot import messages
from bot.alertmanager import Alert, AlertmanagerClient
from bot.config import AppConfig
from bot.errors import HandlerError, Refused
from bot.registry import HandlerContext, Params, Result, handler
from handlers.deploy.gate import Check, image_exists, reference, vulnerabilities, wants_image_check
from handlers.deploy.rollouts import rollout_name
from handlers.deploy.strategy import health

__all__ = ["PrecheckParams", "prechecks"]

# Labels that tie an alert to a workload, as kube-state-metrics and most alert rules set them
# (`rollout` as rules about Argo Rollouts name theirs; alert routing reads the same labels).
WORKLOAD_LABELS = ("deployment", "statefulset", "rollout", "app", "service")
ALERTS_FIELD = "No critical alerts"
HEALTH_FIELD = "Healthy"
IMAGE_FIELD = "Image in registry"
VULNERABILITIES_FIELD = "Vulnerabilities"


class PrecheckParams(Params):
    """Which checks run; None takes `environments.<env>.deploy.prechecks`."""

    no_critical_alerts: bool | None = None
    healthy: bool | None = None
    image_exists: bool | None = None
    # The deploy's plan (`deploy.plan`'s data.plan): its new image is checked, when it has one
    # (an Argo CD app deploys a revision, not an image).
    plan: dict[str, Any] | None = None


@handler("deploy.prechecks", params=PrecheckParams)
async def prechecks(*, ctx: HandlerContext, params: PrecheckParams, **_: object) -> Result:
    """Refuse a deploy while a critical alert fires for the app or its workload is unhealthy,
    or its new image is missing or carries more vulnerabilities than the environment allows."""
    app = ctx.require_app()
    configured = ctx.environment.deploy.prechecks
    want_alerts = configured.no_critical_alerts if params.no_critical_alerts is None \
        else params.no_critical_alerts
    want_health = configured.healthy if params.healthy is None else params.healthy
    details = (params.plan or {}).get("details") or {}
    image = details.get("image") if isinstance(details.get("image"), str) else None
    container = details.get("container") if isinstance(details.get("container"), str) else None

    fields: list[tuple[str, str]] = []
    problems: list[str] = []
    passed: list[str] = []
    unchecked: list[str] = []  # wanted, but could not run
    firing: list[Alert] = []
    healthy: bool | None = None
    accepted: list[str] = []  # over a limit, for approvers to accept

    def note(name: str, check: Check) -> None:
        fields.append((name, check.field))
        for kept, value in ((passed, check.passed), (unchecked, check.unchecked),
                            (accepted, check.accepted)):
            if value:
                kept.append(value)

    # The image first: a tag that does not exist refuses before anything else is asked.
    if image is not None:
        wanted = configured.image_exists if params.image_exists is None \
            else params.image_exists
        if wants_image_check(ctx, reference(image), wanted):
            note(IMAGE_FIELD, await image_exists(ctx, image))
        elif wanted is False:
            fields.append((IMAGE_FIELD, messages.precheck_off()))
        limits = ctx.environment.deploy.vulnerabilities
        if limits is not None:
            note(VULNERABILITIES_FIELD, await vulnerabilities(ctx, image, container, limits))

    if not want_alerts:
        fields.append((ALERTS_FIELD, messages.precheck_off()))
    elif not ctx.settings.alertmanager_url:
        fields.append((ALERTS_FIELD, messages.precheck_alerts_field_skipped()))
        unchecked.append(messages.precheck_alerts_not_checked())
    else:
        try:
            firing = await critical_alerts(ctx, app)
        except HandlerError as exc:  # Alertmanager did not answer: not checked, not passed
            fields.append((ALERTS_FIELD, messages.not_checked(str(exc))))
            unchecked.append(messages.precheck_alerts_unreachable(str(exc)))
        else:
            if firing:
                fields.append((ALERTS_FIELD, messages.precheck_alerts_field_failed(
                    [(a.name, a.starts_at) for a in firing])))
                problems.append(messages.precheck_alerts_failed(
                    app.name, ctx.environment.name, sorted({a.name for a in firing})))
            else:
                fields.append((ALERTS_FIELD, messages.precheck_alerts_field_ok()))
                passed.append(messages.precheck_no_alerts())

    if not want_health:
        fields.append((HEALTH_FIELD, messages.precheck_off()))
    else:
        state = await health(ctx, app)
        healthy = state.healthy
        fields.append((HEALTH_FIELD, messages.precheck_health_field(healthy, state.message)))
        if healthy:
            passed.append(messages.precheck_healthy(state.target, state.message))
        else:
            problems.append(messages.precheck_unhealthy(state.target, state.message))

    if not problems and ctx.environment.refuses_unchecked:
        cannot_run = unchecked + verify_cannot_run(ctx, app)
        if cannot_run:
            raise Refused(messages.precheck_refused_unchecked(app.name, ctx.environment.name,
                                                              cannot_run))

    summary = "; ".join(problems) if problems else messages.precheck_passed(
        app.name, ctx.environment.name, passed, unchecked)
    if accepted and not problems:
        summary += "; " + "; ".join(accepted)
    return Result(
        summary=summary,
        ok=not problems,
        fields=tuple(fields),
        data={
            "passed": not problems and not unchecked and not accepted,
            "alerts": [a.name for a in firing],
            "healthy": healthy,
            "not_checked": unchecked,
            "accepted": accepted,
            # The image's lines in the plan approvers see (bot/preview.py).
            "for_approvers": [f"{name}: {value}" for name, value in fields
                              if name in (IMAGE_FIELD, VULNERABILITIES_FIELD)],
        },
        not_checked=tuple(unchecked),
    )


def verify_cannot_run(ctx: HandlerContext, app: AppConfig) -> list[str]:
    """Why the deploy's Verify step would not check anything, known before the rollout (its
    own step says so again, as not checked, where the deploy goes on)."""
    if not ctx.environment.deploy.verify:
        return []
    if not app.analysis.metrics:
        return [messages.precheck_verify_not_checked(messages.analysis_no_metrics(app.name))]
    if not ctx.settings.prometheus_url:
        return [messages.precheck_verify_not_checked(messages.analysis_no_prometheus())]
    return []


async def critical_alerts(ctx: HandlerContext, app: AppConfig) -> list[Alert]:
    """Critical alerts firing in the app's namespace that name its workload, its Rollout, or
    the app."""
    url = ctx.settings.alertmanager_url
    assert url is not None
    token = ctx.settings.alertmanager_token
    async with AlertmanagerClient(url, token.get_secret_value() if token else None) as client:
        alerts = await client.firing({"severity": "critical", "namespace": ctx.namespace})
    names = {app.workload_name, app.name, rollout_name(app)}
    return [a for a in alerts if any(a.labels.get(label) in names for label in WORKLOAD_LABELS)]
