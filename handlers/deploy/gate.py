"""The deploy gate's image checks, run by `deploy.prechecks` before anything changes: the new
image is in its registry (a missing tag refuses), and Trivy Operator's VulnerabilityReports for
it are within the environment's limits. A check that cannot run says so (not checked), never
passed."""

from __future__ import annotations

import base64
import binascii
import json
import ssl
from dataclasses import dataclass
from typing import Any

from bot import messages
from bot.config import RegistryConfig, VulnerabilityLimits
from bot.errors import HandlerError, NotFound, PermanentError, Refused
from bot.oci import (
    DOCKER_HUB,
    DOCKER_HUB_ENDPOINT,
    Credentials,
    ImageRef,
    RegistryClient,
    credentials_from,
    parse_image,
)
from bot.registry import HandlerContext

__all__ = ["Check", "image_exists", "vulnerabilities", "wants_image_check"]

TRIVY_GROUP, TRIVY_VERSION, TRIVY_PLURAL = "aquasecurity.github.io", "v1alpha1", \
    "vulnerabilityreports"
CONTAINER_LABEL = "trivy-operator.container.name"
DOCKERCONFIGJSON = "kubernetes.io/dockerconfigjson"


@dataclass(frozen=True)
class Check:
    """One check's outcome: its field, and what it adds to the step's summary."""

    field: str
    passed: str | None = None
    unchecked: str | None = None
    accepted: str | None = None  # over a limit, shown for approvers to accept


def reference(image: str) -> ImageRef:
    try:
        return parse_image(image)
    except ValueError as exc:
        raise Refused(messages.image_bad_reference(image, str(exc))) from None


def wants_image_check(ctx: HandlerContext, ref: ImageRef, wanted: bool | None) -> bool:
    """None: where `registries` names the image's host."""
    return ref.host in ctx.settings.registries if wanted is None else wanted


async def image_exists(ctx: HandlerContext, image: str) -> Check:
    """The manifest of `image` in its registry; raises Refused when the registry says it is not
    there."""
    ref = reference(image)
    config = ctx.settings.registries.get(ref.host) or RegistryConfig()
    url = config.url or (DOCKER_HUB_ENDPOINT if ref.host == DOCKER_HUB else f"https://{ref.host}")
    try:
        verify = _tls(ctx, config)
        credentials = await _credentials(ctx, config, ref.host)
        async with RegistryClient(url, credentials=credentials, verify=verify,
                                  timeout=config.timeout_seconds) as client:
            answer = await client.manifest(ref)
    except HandlerError as exc:
        return Check(messages.not_checked(str(exc)),
                     unchecked=messages.image_not_checked(str(ref), str(exc)))
    if not answer.found:
        raise Refused(messages.image_missing(str(ref), ref.host))
    return Check(messages.image_field_found(answer.digest),
                 passed=messages.image_found(str(ref)))


def _tls(ctx: HandlerContext, config: RegistryConfig) -> bool | ssl.SSLContext:
    if config.insecure:
        return False
    if not config.ca_file:
        return True
    path = ctx.settings.resolve_path(config.ca_file)
    try:
        return ssl.create_default_context(cafile=str(path))
    except (OSError, ssl.SSLError) as exc:
        raise PermanentError(messages.image_bad_ca_file(str(path), str(exc))) from exc


async def _credentials(ctx: HandlerContext, config: RegistryConfig,
                       host: str) -> Credentials | None:
    if config.credentials_file:
        path = ctx.settings.resolve_path(config.credentials_file)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PermanentError(messages.image_bad_credentials_file(str(path), str(exc))) \
                from exc
        return credentials_from(data if isinstance(data, dict) else {}, host)
    if config.credentials_secret:
        name = config.credentials_secret
        try:
            secret = await ctx.kube.call(ctx.kube.core.read_namespaced_secret, name,
                                         ctx.namespace)
        except HandlerError as exc:
            raise PermanentError(messages.image_no_secret(name, ctx.namespace, str(exc))) \
                from exc
        encoded = (secret.data or {}).get(".dockerconfigjson")
        if secret.type != DOCKERCONFIGJSON or not encoded:
            raise PermanentError(messages.image_bad_secret(name, ctx.namespace))
        try:
            data = json.loads(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise PermanentError(messages.image_bad_secret(name, ctx.namespace)) from exc
        return credentials_from(data if isinstance(data, dict) else {}, host)
    return None


async def vulnerabilities(ctx: HandlerContext, image: str, container: str | None,
                          limits: VulnerabilityLimits) -> Check:
    """The newest VulnerabilityReport of `image` (in the environment's namespace, else in the
    namespaces of the environments on the same cluster, where it ran before) against `limits`.
    Over a limit raises Refused, unless the environment lets approvers accept them."""
    ref = reference(image)
    try:
        report = await _report(ctx, ref, container)
    except HandlerError as exc:
        reason = "Trivy Operator is not installed" if isinstance(exc, NotFound) else str(exc)
        return Check(messages.not_checked(reason),
                     unchecked=messages.vulnerability_unreadable(reason))
    if report is None:
        why = messages.vulnerability_no_report(str(ref))
        return Check(messages.not_checked(why), unchecked=why)
    summary = (report.get("report") or {}).get("summary") or {}
    critical, high = _count(summary.get("criticalCount")), _count(summary.get("highCount"))
    meta = report.get("metadata") or {}
    source = messages.vulnerability_report_source(str(meta.get("namespace")),
                                                  str(meta.get("name")))
    counts = messages.vulnerability_counts(critical, high)
    over = critical > limits.max_critical or (limits.max_high is not None
                                              and high > limits.max_high)
    if not over:
        return Check(messages.vulnerability_field_ok(counts, source),
                     passed=messages.vulnerability_passed(counts))
    shown_limits = messages.vulnerability_limits(limits.max_critical, limits.max_high)
    if limits.on_exceed == "approve" and ctx.environment.requires_approval:
        return Check(messages.vulnerability_field_accept(counts, shown_limits, source),
                     accepted=messages.vulnerability_accepted(str(ref), counts))
    raise Refused(messages.vulnerability_refused(str(ref), counts, shown_limits,
                                                 ctx.environment.name))


async def _report(ctx: HandlerContext, ref: ImageRef,
                  container: str | None) -> dict[str, Any] | None:
    same_cluster = [env.namespace for env in ctx.settings.environments.values()
                    if env.kube_context == ctx.environment.kube_context]
    namespaces = [ctx.namespace] + [ns for ns in dict.fromkeys(same_cluster)
                                    if ns != ctx.namespace]
    selector = {"label_selector": f"{CONTAINER_LABEL}={container}"} if container else {}
    for namespace in namespaces:
        listed = await ctx.kube.call(ctx.kube.custom.list_namespaced_custom_object, TRIVY_GROUP,
                                     TRIVY_VERSION, namespace, TRIVY_PLURAL, **selector)
        mine: list[dict[str, Any]] = [r for r in listed.get("items") or []
                                      if _describes(r, ref)]
        if mine:
            return max(mine, key=_updated)
    return None


def _describes(report: dict[str, Any], ref: ImageRef) -> bool:
    body = report.get("report") or {}
    artifact = body.get("artifact") or {}
    server = str((body.get("registry") or {}).get("server") or "")
    if server in ("index.docker.io", "registry-1.docker.io"):
        server = DOCKER_HUB
    if server != ref.host or artifact.get("repository") != ref.repository:
        return False
    if ref.digest:
        return bool(artifact.get("digest") == ref.digest)
    return bool(artifact.get("tag") == ref.tag)


def _updated(report: dict[str, Any]) -> str:
    return str((report.get("report") or {}).get("updateTimestamp")
               or (report.get("metadata") or {}).get("creationTimestamp") or "")


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
