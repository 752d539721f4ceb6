"""A simulated Kubernetes cluster: the real REST API (JSON) over HTTP with Deployment,
ReplicaSet, StatefulSet and kubelet controllers, scripted failures and fault injection."""

from __future__ import annotations

from .cli import serve_forever
from .cluster import SimCluster
from .controllers import BUILTINS, ControllerRegistry, Ctx
from .faults import FaultHandle, Faults
from .resources import ResourceType

__all__ = [
    "BUILTINS",
    "ControllerRegistry",
    "Ctx",
    "FaultHandle",
    "Faults",
    "ResourceType",
    "SimCluster",
    "serve_forever",
]
