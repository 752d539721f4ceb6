"""`backup verify` and `backup verify_latest`: prove a backup restores by restoring it into a
scratch namespace and comparing what came back with the resource list Velero hands out."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import time

from pydantic import Field

from bot import messages
from bot.errors import NotFound, PermanentError, Refused, RetryableError
from bot.lazy import httpx
from bot.messages import rough_span
from bot.registry import HandlerContext, Params, Result, handler
from handlers.backup import common
from handlers.backup.common import (
    CHECKED_KINDS,
    DONE,
    GROUP,
    RESTORABLE,
    VERSION,
    BackupNameParams,
    Obj,
    _backup_of_env,
    _dump,
    _follow,
    _get,
    _includes,
    _list,
    _meta,
    _name,
    _now,
    _outcome_fields,
    _phase_words,
    _status,
    _timeout,
    _timestamp,
)

__all__ = [
    "BackupVerifyParams",
    "VerifyLatestParams",
    "backup_verify",
    "backup_verify_latest",
    "compare",
    "resource_list",
]

#: Kinds Velero backs up but does not restore as themselves (controllers recreate them).
_NOT_RESTORED = {"v1/Pod", "apps/v1/ReplicaSet", "v1/Endpoints", "v1/Event",
                 "discovery.k8s.io/v1/EndpointSlice", "events.k8s.io/v1/Event"}
_KIND_KEYS = {
    "Deployment": "apps/v1/Deployment", "StatefulSet": "apps/v1/StatefulSet",
    "Service": "v1/Service", "ConfigMap": "v1/ConfigMap", "Secret": "v1/Secret",
    "PersistentVolumeClaim": "v1/PersistentVolumeClaim", "ServiceAccount": "v1/ServiceAccount",
}


class BackupVerifyParams(BackupNameParams):
    timeout: str = Field(default="30m", description="How long the test restore may take.")


async def resource_list(ctx: HandlerContext, backup: str) -> dict[str, list[str]]:
    """What the backup holds, as `velero backup describe --details` reads it: a DownloadRequest
    for its BackupResourceList, then the gzipped JSON at the signed URL Velero hands out
    (`{"apps/v1/Deployment": ["shop-staging/shop-api", ...], ...}`)."""
    velero_ns = ctx.settings.backup.namespace
    name = f"{backup[:200]}-{_now().strftime('%Y%m%d%H%M%S%f')}"
    body: Obj = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DownloadRequest",
                 "metadata": {"name": name},
                 "spec": {"target": {"kind": "BackupResourceList", "name": backup}}}
    await ctx.kube.call(ctx.kube.custom.create_namespaced_custom_object, GROUP, VERSION,
                        velero_ns, "downloadrequests", body)
    try:
        deadline = time.monotonic() + 60
        while True:
            request = await _get(ctx, "downloadrequests", name)
            status = _status(request or {})
            if status.get("phase") == "Processed" and status.get("downloadURL"):
                url = str(status["downloadURL"])
                break
            if time.monotonic() >= deadline:
                raise RetryableError(f"Velero did not answer the download request for {backup}")
            await asyncio.sleep(min(common.POLL_SECONDS, 0.5))
    finally:
        with contextlib.suppress(NotFound):
            await ctx.kube.call(ctx.kube.custom.delete_namespaced_custom_object, GROUP,
                                VERSION, velero_ns, "downloadrequests", name)
    if not url.startswith(("http://", "https://")):
        raise PermanentError(f"Velero gave a download URL opsbot will not follow for {backup}")
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            response = await http.get(url)
        response.raise_for_status()
        listed = json.loads(gzip.decompress(response.content))
    except (httpx.HTTPError, OSError, ValueError) as exc:
        raise RetryableError(f"the resource list of {backup} could not be read "
                             f"({type(exc).__name__})") from exc
    if not isinstance(listed, dict):
        raise PermanentError(f"the resource list of {backup} is not what Velero writes")
    return {str(k): [str(i) for i in v] for k, v in listed.items() if isinstance(v, list)}


async def _restored(ctx: HandlerContext, namespace: str, restore: str) -> dict[str, set[str]]:
    """Objects a restore created in `namespace`, by kind key (Velero labels each one)."""
    selector = f"velero.io/restore-name={restore}"
    found: dict[str, set[str]] = {}
    for _, kind, api_name, lister in CHECKED_KINDS:
        fn = getattr(getattr(ctx.kube, api_name), lister)
        listed = await ctx.kube.call(fn, namespace, label_selector=selector)
        found[_KIND_KEYS[kind]] = {item.metadata.name for item in listed.items}
    return found


def compare(expected: dict[str, list[str]], restored: dict[str, set[str]],
            source_ns: str) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """Per kind, `held → restored` counts; the problems (objects held, not restored); and the
    kinds held that opsbot does not compare (`Ingress (2 held)`): not checked."""
    rows: list[tuple[str, str]] = []
    problems: list[str] = []
    unchecked: list[str] = []
    for key in sorted(expected):
        names = {i.split("/", 1)[1] for i in expected[key] if i.startswith(f"{source_ns}/")}
        if not names or key in _NOT_RESTORED:
            continue
        kind = key.rsplit("/", 1)[-1]
        if key not in restored:
            rows.append((kind, f"{len(names)} held; not checked"))
            unchecked.append(f"{kind} ({len(names)} held; opsbot does not compare this kind)")
            continue
        got = restored[key] & names
        missing = sorted(names - got)
        rows.append((kind, f"{len(names)} held, {len(got)} restored"))
        if missing:
            problems.append(f"{kind} not restored: {', '.join(missing[:10])}")
    return rows, problems, unchecked


@handler("backup.verify", params=BackupVerifyParams, mutating=True)
async def backup_verify(*, ctx: HandlerContext, params: BackupVerifyParams, **_: object
                        ) -> Result:
    """Restore a backup into a scratch namespace, compare what came back with what the backup
    holds (kinds and counts), report, and delete the scratch namespace whatever happened."""
    backup = await _backup_of_env(ctx, params.name)
    phase = _status(backup).get("phase") or "New"
    if phase not in RESTORABLE:
        raise Refused(f"backup {params.name} is {phase}; only a Completed or PartiallyFailed "
                      "backup can be verified")
    return await _verify(ctx, params.name, _timeout(params.timeout))


class VerifyLatestParams(Params):
    timeout: str = Field(default="30m", description="How long the test restore may take.")


@handler("backup.verify_latest", params=VerifyLatestParams, mutating=True)
async def backup_verify_latest(*, ctx: HandlerContext, params: VerifyLatestParams,
                               **_: object) -> Result:
    """Verify the newest finished backup opsbot made of the app in this environment (the
    scheduled verification runs this for every configured app)."""
    app = ctx.require_app()
    finished = [
        b for b in await _list(ctx, "backups")
        if (b["metadata"].get("labels") or {}).get("opsbot.io/app") == app.name
        and (b["metadata"].get("labels") or {}).get("opsbot.io/environment") == ctx.environment.name
        and _status(b).get("phase") in RESTORABLE and _includes(b, ctx.namespace)
    ]
    if not finished:
        reason = f"no finished backup of {app.name} in {ctx.environment.name}"
        return Result(summary=messages.not_checked(f"{reason} to verify"), data={"skipped": True},
                      not_checked=(f"test restore ({reason})",))
    latest = max(finished, key=lambda b: (_status(b).get("completionTimestamp") or "", _name(b)))
    return await _verify(ctx, _name(latest), _timeout(params.timeout))


async def _verify(ctx: HandlerContext, backup_name: str, timeout: float) -> Result:
    """The test restore of `backup_name` into a scratch namespace, compared and cleaned up."""
    params = BackupNameParams(name=backup_name)
    stamp = _timestamp(ctx)
    scratch = f"opsbot-verify-{_now().strftime('%m%d%H%M%S')}" if not ctx.dry_run \
        else "opsbot-verify-<mmddhhmmss>"
    restore = f"{params.name[:200]}-verify-{stamp}"
    body: Obj = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Restore",
                 "metadata": _meta(ctx, restore, None),
                 "spec": {"backupName": params.name, "includedNamespaces": [ctx.namespace],
                          "namespaceMapping": {ctx.namespace: scratch}}}
    fields: list[tuple[str, str]] = [("Backup", params.name), ("Scratch namespace", scratch),
                                     ("Restore", restore)]
    if ctx.dry_run:
        return Result(summary=f"would restore {params.name} into {scratch}, compare it with "
                      "the backup, then delete the namespace", fields=tuple(fields),
                      output=_dump(body))
    expected = await resource_list(ctx, params.name)
    velero_ns = ctx.settings.backup.namespace
    data: Obj = {"backup": params.name, "scratch": scratch, "restore": restore}
    try:
        await ctx.kube.call(ctx.kube.custom.create_namespaced_custom_object, GROUP, VERSION,
                            velero_ns, "restores", body)
        final = await _follow(ctx, "restores", restore, timeout, "itemsRestored", "restored")
        status = _status(final or {})
        rphase = str(status.get("phase") or "gone")
        fields += _outcome_fields(status, "itemsRestored")
        restored = await _restored(ctx, scratch, restore)
        rows, problems, unchecked = compare(expected, restored, ctx.namespace)
        fields += rows
        if rphase not in DONE:
            problems.insert(0, f"the test restore did not finish within {rough_span(timeout)} "
                               f"(still {rphase})")
        elif rphase not in ("Completed", "PartiallyFailed"):
            problems.insert(0, f"the test restore {_phase_words(rphase)}: "
                               f"{status.get('failureReason') or status.get('errors', 0)}")
    finally:
        cleaned = await _delete_namespace(ctx, scratch)
    fields.append(("Cleanup", cleaned))
    data |= {"ok": not problems, "problems": problems}
    if problems:
        return Result(summary=f"backup {params.name} did NOT verify: {problems[0]}",
                      fields=tuple(fields), output="\n".join(problems), ok=False, data=data)
    checked = sum(len(v) for k, v in expected.items() if k in restored)
    summary = (f"backup {params.name} verified: a test restore brought back what it holds "
               f"({checked} objects); {scratch} deleted")
    if unchecked:
        summary = (f"backup {params.name} verified for the kinds opsbot compares: a test "
                   f"restore brought back {checked} objects; {scratch} deleted; "
                   f"{messages.not_checked_list(unchecked)}")
    return Result(summary=summary, fields=tuple(fields), data=data | {"not_checked": unchecked},
                  not_checked=tuple(unchecked))


async def _delete_namespace(ctx: HandlerContext, namespace: str) -> str:
    """Delete the scratch namespace and wait (bounded) until it is gone; says how it went."""
    try:
        await ctx.kube.call(ctx.kube.core.delete_namespace, namespace)
    except NotFound:
        return f"{namespace} was not created"
    except (PermanentError, RetryableError) as exc:
        ctx.log.error("backup verify: scratch namespace %s not deleted: %s", namespace, exc)
        return f"could not delete {namespace}: {exc}; delete it by hand"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            await ctx.kube.call(ctx.kube.core.read_namespace, namespace)
        except NotFound:
            return f"{namespace} deleted"
        await asyncio.sleep(0.5)
    return f"{namespace} is being deleted"
