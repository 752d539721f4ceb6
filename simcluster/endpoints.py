"""The Endpoints controller: for every Service with a selector, an Endpoints object of the same
name listing the selected pods' IPs (ready ones under `addresses`, the others under
`notReadyAddresses`) with the Service's target ports resolved, as the real controller keeps it."""

from __future__ import annotations

from typing import Any

from .controllers import BUILTINS, Ctx
from .replicasets import pod_ready

JSON = dict[str, Any]


@BUILTINS.for_kind("", "Service", name="endpoints-controller", order=60)
def reconcile_endpoints(ctx: Ctx, service: JSON) -> None:
    selector = (service.get("spec") or {}).get("selector")
    if not selector:
        return  # selector-less Services have Endpoints their owners write
    meta = service["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    pods = ctx.list("", "Pod", namespace, {"matchLabels": selector},
                    where=lambda p: bool((p.get("status") or {}).get("podIP"))
                    and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed"))
    publish_all = bool(service["spec"].get("publishNotReadyAddresses"))
    groups: dict[tuple[tuple[str, int, str], ...], JSON] = {}
    for pod in sorted(pods, key=lambda p: p["status"]["podIP"]):
        ports = tuple(_port(port, pod) for port in service["spec"].get("ports") or [])
        subset = groups.setdefault(ports, {})
        address: JSON = {"ip": pod["status"]["podIP"],
                         "targetRef": {"kind": "Pod", "namespace": namespace,
                                       "name": pod["metadata"]["name"],
                                       "uid": pod["metadata"]["uid"]}}
        if pod["spec"].get("nodeName"):
            address["nodeName"] = pod["spec"]["nodeName"]
        key = "addresses" if publish_all or pod_ready(pod) else "notReadyAddresses"
        subset.setdefault(key, []).append(address)
    subsets = []
    for ports, addresses in groups.items():
        subset = dict(addresses)
        if ports:
            subset["ports"] = [{"name": n, "port": p, "protocol": proto} if n else
                               {"port": p, "protocol": proto} for n, p, proto in ports]
        subsets.append(subset)
    labels = dict(meta.get("labels") or {})
    if service["spec"].get("clusterIP") == "None":
        labels["service.kubernetes.io/headless"] = ""
    current = ctx.get("", "Endpoints", namespace, name)
    if current is None:
        body: JSON = {"apiVersion": "v1", "kind": "Endpoints",
                      "metadata": {"name": name, "namespace": namespace}}
        if labels:
            body["metadata"]["labels"] = labels
        if subsets:
            body["subsets"] = subsets
        ctx.create(body)
        return
    if labels:
        current["metadata"]["labels"] = labels
    else:
        current["metadata"].pop("labels", None)
    if subsets:
        current["subsets"] = subsets
    else:
        current.pop("subsets", None)
    ctx.write(current)


@BUILTINS.for_kind("", "Endpoints", name="endpoints-cleanup", order=61)
def reconcile_orphan_endpoints(ctx: Ctx, endpoints: JSON) -> None:
    """Endpoints of a deleted Service go with it."""
    meta = endpoints["metadata"]
    if ctx.get("", "Service", meta["namespace"], meta["name"]) is None:
        ctx.delete(endpoints)


def _port(port: JSON, pod: JSON) -> tuple[str, int, str]:
    """(name, resolved target port, protocol); a named targetPort is looked up in the pod."""
    target = port.get("targetPort", port.get("port"))
    if isinstance(target, str) and not target.isdigit():
        for container in pod["spec"].get("containers") or []:
            for cport in container.get("ports") or []:
                if cport.get("name") == target:
                    target = cport["containerPort"]
                    break
    number = int(target) if isinstance(target, int | str) and str(target).isdigit() else 0
    return str(port.get("name") or ""), number, str(port.get("protocol", "TCP"))
