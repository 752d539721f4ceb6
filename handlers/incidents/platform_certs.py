"""`incident.certificate` for cert-manager's CertManagerCertExpirySoon and CertManagerCertNotReady:
the Certificate's Ready condition, notAfter and renewalTime, its latest CertificateRequest, the
issuer's readiness and any failing ACME challenge, condensed into the likely cause."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import field_validator

from bot.errors import NotFound
from bot.messages import rough_span
from bot.registry import HandlerContext, Result, handler
from handlers.incident import AlertParams, diagnosis, parse_time
from handlers.incidents.platform_common import check_name, stamp

__all__ = ["CertificateParams", "certificate"]

GROUP, VERSION = "cert-manager.io", "v1"
ACME = "acme.cert-manager.io"
NAME_ANNOTATION = "cert-manager.io/certificate-name"
REVISION_ANNOTATION = "cert-manager.io/certificate-revision"
Obj = dict[str, Any]


class CertificateParams(AlertParams):
    certificate: str

    _name = field_validator("certificate")(lambda v: check_name(v, "certificate"))


def _condition(obj: Obj | None, type_: str) -> Obj | None:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None


def _cond_text(cond: Obj | None) -> str:
    if cond is None:
        return "none"
    text = str(cond.get("status", "Unknown"))
    if cond.get("reason"):
        text += f" ({cond['reason']})"
    if cond.get("message"):
        text += f": {str(cond['message'])[:300]}"
    return text


@handler("incident.certificate", params=CertificateParams)
async def certificate(*, ctx: HandlerContext, params: CertificateParams, **_: object) -> Result:
    """A cert-manager Certificate: readiness, expiry, renewal and why it is not renewed."""
    namespace, name = ctx.namespace, params.certificate
    custom = ctx.kube.custom
    try:
        cert: Obj = await ctx.kube.call(custom.get_namespaced_custom_object, GROUP, VERSION,
                                        namespace, "certificates", name)
    except NotFound:
        return diagnosis(
            what=f"Certificate {name} does not exist in {namespace}", alert=params.alert,
            ok=False, cause="it was deleted or renamed (or cert-manager's CRDs are not "
                            "installed in this cluster)")
    spec, status = cert.get("spec") or {}, cert.get("status") or {}
    ready = _condition(cert, "Ready")
    issuing = _condition(cert, "Issuing")
    now = datetime.now(UTC)
    not_after = parse_time(status.get("notAfter"))
    renewal = parse_time(status.get("renewalTime"))
    request = await _latest_request(ctx, name, namespace)
    issuer = await _issuer(ctx, spec.get("issuerRef") or {}, namespace)
    challenges = await _challenges(ctx, request, namespace) if request else []
    await ctx.progress("certificate, request, issuer and challenges read")

    is_ready = bool(ready and ready.get("status") == "True")
    if not is_ready:
        what = f"Certificate {name} in {namespace} is not Ready"
        if ready and ready.get("reason"):
            what += f" ({ready['reason']})"
    elif not_after is not None:
        left = (not_after - now).total_seconds()
        what = (f"Certificate {name} in {namespace} expired {rough_span(-left)} ago" if left < 0
                else f"Certificate {name} in {namespace} expires in {rough_span(left)}")
    else:
        what = f"Certificate {name} in {namespace} is Ready"
    cause = _cause(ready, issuing, not_after, renewal, request, issuer, challenges, now)
    evidence = [
        ("Ready", _cond_text(ready)),
        ("Not after", stamp(not_after)),
        ("Renewal time", stamp(renewal) + (" (passed)" if renewal and renewal < now else "")),
        ("Issuer", issuer["text"]),
        ("Request", _request_text(request)),
    ]
    if issuing is not None:
        evidence.append(("Issuing", _cond_text(issuing)))
    if status.get("failedIssuanceAttempts"):
        evidence.append(("Failed issuance attempts",
                         f"{status['failedIssuanceAttempts']} (last "
                         f"{stamp(parse_time(status.get('lastFailureTime')))})"))
    for challenge in challenges[:3]:
        evidence.append(("Challenge", _challenge_text(challenge)))
    return diagnosis(
        what=what, cause=cause, alert=params.alert, evidence=evidence,
        data={"certificate": name, "ready": is_ready,
              "not_after": not_after.isoformat() if not_after else None,
              "renewal_time": renewal.isoformat() if renewal else None,
              "issuer": issuer["name"], "issuer_ready": issuer["ready"],
              "request": (request or {}).get("metadata", {}).get("name"),
              "dns_names": list(spec.get("dnsNames") or [])},
    )


async def _latest_request(ctx: HandlerContext, name: str, namespace: str) -> Obj | None:
    try:
        listed = await ctx.kube.call(ctx.kube.custom.list_namespaced_custom_object, GROUP,
                                     VERSION, namespace, "certificaterequests")
    except NotFound:
        return None
    mine = [r for r in listed.get("items") or []
            if (r.get("metadata", {}).get("annotations") or {}).get(NAME_ANNOTATION) == name]

    def order(request: Obj) -> tuple[int, str]:
        annotations = request["metadata"].get("annotations") or {}
        try:
            revision = int(annotations.get(REVISION_ANNOTATION, 0))
        except ValueError:
            revision = 0
        return revision, str(request["metadata"].get("creationTimestamp", ""))

    return max(mine, key=order) if mine else None


async def _issuer(ctx: HandlerContext, ref: Obj, namespace: str) -> dict[str, Any]:
    kind = str(ref.get("kind") or "Issuer")
    name = str(ref.get("name") or "")
    found: dict[str, Any] = {"name": name, "kind": kind, "ready": None, "exists": None,
                             "text": f"{kind} {name or '(none)'}"}
    if (ref.get("group") or GROUP) != GROUP or not name:
        found["text"] += " (external issuer; readiness not checked)"
        return found
    try:
        if kind == "ClusterIssuer":
            obj = await ctx.kube.call(ctx.kube.custom.get_cluster_custom_object, GROUP, VERSION,
                                      "clusterissuers", name)
        else:
            obj = await ctx.kube.call(ctx.kube.custom.get_namespaced_custom_object, GROUP,
                                      VERSION, namespace, "issuers", name)
    except NotFound:
        found.update(exists=False, ready=False, text=f"{kind} {name} does not exist")
        return found
    cond = _condition(obj, "Ready")
    found.update(exists=True, ready=bool(cond and cond.get("status") == "True"),
                 condition=cond, text=f"{kind} {name}: Ready {_cond_text(cond)}")
    return found


async def _challenges(ctx: HandlerContext, request: Obj, namespace: str) -> list[Obj]:
    """ACME challenges of the request's order (request -> Order -> Challenges by owner)."""
    uid = request["metadata"].get("uid")
    try:
        orders = await ctx.kube.call(ctx.kube.custom.list_namespaced_custom_object, ACME, "v1",
                                     namespace, "orders")
        challenges = await ctx.kube.call(ctx.kube.custom.list_namespaced_custom_object, ACME,
                                         "v1", namespace, "challenges")
    except NotFound:
        return []

    def owned_by(obj: Obj, uids: set[str]) -> bool:
        return any(ref.get("uid") in uids for ref in obj["metadata"].get("ownerReferences") or [])

    order_uids = {o["metadata"]["uid"] for o in orders.get("items") or [] if owned_by(o, {uid})}
    return [c for c in challenges.get("items") or [] if owned_by(c, order_uids)]


def _challenge_failing(challenge: Obj) -> bool:
    status = challenge.get("status") or {}
    return status.get("state") in ("invalid", "errored", "expired") or (
        status.get("state") in (None, "", "pending") and bool(status.get("reason")))


def _cause(ready: Obj | None, issuing: Obj | None, not_after: datetime | None,
           renewal: datetime | None, request: Obj | None, issuer: dict[str, Any],
           challenges: list[Obj], now: datetime) -> str:
    if issuer["exists"] is False:
        return f"the {issuer['kind']} {issuer['name']} it names does not exist"
    if issuer["ready"] is False:
        cond = issuer.get("condition") or {}
        return (f"the issuer is not ready: {issuer['kind']} {issuer['name']}"
                + (f" ({cond.get('reason')}: {cond.get('message')})" if cond else ""))
    failing = [c for c in challenges if _challenge_failing(c)]
    if failing:
        return f"an ACME challenge is failing: {_challenge_text(failing[0])}"
    for type_ in ("Denied", "InvalidRequest"):
        cond = _condition(request, type_)
        if cond and cond.get("status") == "True":
            return f"the CertificateRequest was {type_.lower()}: {cond.get('message', '')}"
    request_ready = _condition(request, "Ready")
    if request_ready and request_ready.get("reason") == "Failed":
        return f"issuing failed: {request_ready.get('message', '')}"
    renewal_due = renewal is not None and renewal <= now
    if renewal is not None and renewal <= now and issuing is None and (
            request is None or _older(request, renewal)):
        return (f"renewal was not attempted: renewalTime {stamp(renewal)} passed and no "
                "CertificateRequest since (is cert-manager running?)")
    if request_ready and request_ready.get("status") != "True":
        return (f"renewal is in progress but the request is still {request_ready.get('reason')}: "
                f"{request_ready.get('message', '')}")
    if ready and ready.get("status") != "True":
        return f"{ready.get('reason', 'NotReady')}: {ready.get('message', 'no message')}"
    if not_after is not None and not_after > now and not renewal_due:
        return (f"the certificate was renewed (valid until {stamp(not_after)}); the alert "
                "clears with the next scrape")
    return "no failure recorded; check cert-manager's logs"


def _older(request: Obj, moment: datetime) -> bool:
    created = parse_time(request["metadata"].get("creationTimestamp"))
    return created is None or created < moment


def _request_text(request: Obj | None) -> str:
    if request is None:
        return "none"
    meta = request["metadata"]
    text = f"{meta['name']} (created {stamp(parse_time(meta.get('creationTimestamp')))})"
    conds = [f"{t} {_cond_text(c)}" for t in ("Approved", "Denied", "Ready")
             if (c := _condition(request, t)) is not None]
    return text + (": " + "; ".join(conds) if conds else "")


def _challenge_text(challenge: Obj) -> str:
    spec, status = challenge.get("spec") or {}, challenge.get("status") or {}
    state = status.get("state") or "pending"
    text = f"{spec.get('type', 'ACME')} for {spec.get('dnsName', '?')}: {state}"
    if status.get("reason"):
        text += f", {str(status['reason'])[:200]}"
    return text
