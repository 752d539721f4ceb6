"""Discovery documents (/version, /api, /apis, per-group resource lists) generated from the
resource registry, enough for typed clients and the dynamic client to find every kind."""

from __future__ import annotations

from typing import Any

from .errors import ApiError
from .resources import VERBS, ResourceRegistry, ResourceType
from .routing import DiscoveryRoute

JSON = dict[str, Any]
VERSION: JSON = {
    "major": "1", "minor": "31", "gitVersion": "v1.31.0-simcluster",
    "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
    "buildDate": "2024-08-13T00:00:00Z", "goVersion": "go1.22.5", "compiler": "gc",
    "platform": "linux/amd64",
}


def _group(name: str, versions: list[str]) -> JSON:
    entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": entries, "preferredVersion": entries[0]}


def _resources(rtype: ResourceType) -> list[JSON]:
    main: JSON = {
        "name": rtype.plural, "singularName": rtype.singular, "namespaced": rtype.namespaced,
        "kind": rtype.kind, "verbs": VERBS,
    }
    if rtype.short_names:
        main["shortNames"] = list(rtype.short_names)
    out = [main]
    subs: list[tuple[str, str, list[str], str | None]] = []
    if rtype.status_subresource:
        subs.append(("status", rtype.kind, ["get", "patch", "update"], None))
    if rtype.scale_subresource:
        subs.append(("scale", "Scale", ["get", "patch", "update"], "autoscaling"))
    if rtype.kind == "Pod" and not rtype.group:
        subs.append(("log", "Pod", ["get"], None))
    for sub, kind, verbs, group in subs:
        entry: JSON = {"name": f"{rtype.plural}/{sub}", "singularName": "",
                       "namespaced": rtype.namespaced, "kind": kind, "verbs": verbs}
        if group:
            entry.update({"group": group, "version": "v1"})
        out.append(entry)
    return out


def document(route: DiscoveryRoute, types: ResourceRegistry, server_address: str) -> JSON:
    if route.legacy and route.version is None:
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}
    groups = types.groups()
    if route.group is None:
        return {"kind": "APIGroupList", "apiVersion": "v1",
                "groups": [_group(name, versions) for name, versions in sorted(groups.items())]}
    if route.version is None:
        if route.group not in groups:
            raise ApiError(404, "the server could not find the requested resource", details={})
        return {"kind": "APIGroup", "apiVersion": "v1", **_group(route.group, groups[route.group])}
    listed = list(types.in_group_version(route.group, route.version))
    if not listed:
        raise ApiError(404, "the server could not find the requested resource", details={})
    group_version = f"{route.group}/{route.version}" if route.group else route.version
    return {
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
        "resources": [entry for rtype in sorted(listed, key=lambda t: t.plural)
                      for entry in _resources(rtype)],
    }
