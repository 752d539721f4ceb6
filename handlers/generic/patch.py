"""`k8s.patch`: a strategic-merge, merge or JSON patch (RFC 6902) of one named object in the
environment's namespace, of a kind on `k8s_patch.kinds`. The API server tries it first as a
dry run (`dryRun=All`): the plan shows what would change, and a patch that changes nothing is
refused before anything is written."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import field_validator, model_validator

from bot import messages
from bot.config import PATCHABLE_KINDS, PatchableKind
from bot.errors import Refused, UsageError
from bot.names import check_dns1123_subdomain
from bot.registry import HandlerContext, Params, Result, handler

__all__ = ["PatchParams", "patch"]

PatchType = Literal["strategic", "merge", "json"]
MEDIA = {
    "strategic": "application/strategic-merge-patch+json",
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
}
_OPS = {"add", "remove", "replace", "move", "copy", "test"}
_SHOWN_CHANGES = 20
# Written by the API server on every change: never what a patch is about.
_IGNORED = {("metadata", "resourceVersion"), ("metadata", "generation"),
            ("metadata", "managedFields")}
Obj = dict[str, Any]


class PatchParams(Params):
    kind: str  # e.g. Deployment; config k8s_patch.kinds says which may be changed
    name: str
    type: PatchType = "strategic"
    patch: dict[str, Any] | list[dict[str, Any]]
    # `status`: patch the status subresource (as `kubectl patch --subresource=status`, or
    # cert-manager's `cmctl renew`, which adds an Issuing condition there).
    subresource: Literal["status"] | None = None

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        if value not in PATCHABLE_KINDS:
            raise ValueError(f"k8s.patch knows the kinds {', '.join(PATCHABLE_KINDS)}; "
                             f"not `{value[:60]}`")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        try:
            return check_dns1123_subdomain(value, what="name")
        except UsageError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("patch")
    @classmethod
    def _operations(cls, value: dict[str, Any] | list[dict[str, Any]],
                    ) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(value, list):
            for number, op in enumerate(value):
                if op.get("op") not in _OPS or not isinstance(op.get("path"), str):
                    raise ValueError(f"operation {number} is not an RFC 6902 operation "
                                     "(`op` and `path`)")
        return value

    @model_validator(mode="after")
    def _fits_type(self) -> PatchParams:
        if (self.type == "json") != isinstance(self.patch, list):
            raise ValueError("a `json` patch is a list of operations; a `strategic` or `merge` "
                             "patch is an object")
        if self.type == "strategic" and PATCHABLE_KINDS[self.kind].custom:
            raise ValueError(f"{self.kind} is a custom resource: the API server takes `merge` or "
                             "`json` patches of it, not `strategic`")
        return self


@handler("k8s.patch", params=PatchParams, mutating=True)
async def patch(*, ctx: HandlerContext, params: PatchParams, **_: object) -> Result:
    """Patch one named object in the environment's namespace (kinds on k8s_patch.kinds)."""
    if params.kind not in ctx.settings.k8s_patch.kinds:
        raise Refused(messages.patch_kind_not_allowed(params.kind, ctx.settings.k8s_patch.kinds))
    kind = PATCHABLE_KINDS[params.kind]
    path = _path(kind, ctx.namespace, params.name)
    before = await _request(ctx, "GET", path)
    changing = f"{path}/{params.subresource}" if params.subresource else path
    tried = await _request(ctx, "PATCH", changing, params, dry_run=True)
    changes = _changes(before, tried, status=params.subresource == "status")
    target = f"{params.kind} {params.name}" + (f" ({params.subresource})"
                                              if params.subresource else "")
    if not changes:
        raise Refused(messages.patch_no_change(target))
    fields = ((messages.patch_type_field(), params.type),
              *((where, change) for where, change in changes[:_SHOWN_CHANGES]))
    shown = json.dumps(params.patch, indent=2, sort_keys=True, default=str)
    data = {"kind": params.kind, "name": params.name, "changes": len(changes)}
    if ctx.dry_run:
        return Result(summary=messages.would_patch(target, len(changes)), fields=fields,
                      output=shown, data=data)
    after = await _request(ctx, "PATCH", changing, params)
    ctx.log.info("patched %s/%s %s (%s patch, %d changes)", ctx.namespace, params.kind,
                 params.name, params.type, len(changes))
    revision = (after.get("metadata") or {}).get("resourceVersion")
    return Result(summary=messages.patched(target, len(changes)), fields=fields,
                  output=shown, data=data | {"resource_version": revision})


def _path(kind: PatchableKind, namespace: str, name: str) -> str:
    # Both names were checked as Kubernetes names: neither can shape the path.
    check_dns1123_subdomain(namespace, what="namespace")
    check_dns1123_subdomain(name, what="name")
    base = f"/apis/{kind.group}/{kind.version}" if kind.group else f"/api/{kind.version}"
    return f"{base}/namespaces/{namespace}/{kind.plural}/{name}"


async def _request(ctx: HandlerContext, method: str, path: str,
                   params: PatchParams | None = None, *, dry_run: bool = False) -> Obj:
    api = ctx.kube.api_client
    headers = {"Accept": "application/json"}
    if params is not None:
        headers["Content-Type"] = MEDIA[params.type]
    result = await ctx.kube.call(
        api.call_api, resource_path=path, method=method, header_params=headers,
        query_params=[("dryRun", "All")] if dry_run else [],
        body=params.patch if params is not None else None, response_type="object",
        auth_settings=["BearerToken"], _return_http_data_only=True, _preload_content=True)
    return result if isinstance(result, dict) else {}


def _changes(before: Obj, after: Obj, *, status: bool) -> list[tuple[str, str]]:
    """`spec.replicas: 3 → 4` for each leaf the patch changes (status only when the patch is
    of the status subresource: otherwise it is the controllers')."""
    out: list[tuple[str, str]] = []
    for key in sorted(set(before) | set(after)):
        if key not in ("apiVersion", "kind") and (key != "status" or status):
            _diff(before.get(key), after.get(key), (key,), out)
    return out


def _diff(old: Any, new: Any, where: tuple[str, ...], out: list[tuple[str, str]]) -> None:
    if where[:2] in _IGNORED or old == new:
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            _diff(old.get(key), new.get(key), (*where, str(key)), out)
        return
    out.append((".".join(where), messages.patch_change(_short(old), _short(new))))


def _short(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:79] + "…"
