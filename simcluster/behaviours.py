"""Scripted workload misbehaviour (crash loops, image pull errors, never-ready pods) that the
simulated kubelet consults when it decides a pod's status, and the owner walk that ties a pod
to the workload a script names."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]
OwnerLookup = Callable[[str, str, str], JSON | None]  # (kind, namespace, name) -> object


@dataclass(frozen=True)
class CrashLoop:
    namespace: str
    workload: str
    container: str
    reason: str = "OOMKilled"
    exit_code: int = 137
    restarts: int = 7
    log: str = ""
    over_minutes: float = 30.0

    def log_text(self) -> str:
        if self.log:
            return self.log if self.log.endswith("\n") else self.log + "\n"
        return (
            f"INFO {self.container}: starting\n"
            f"INFO {self.container}: processing\n"
            f"ERROR {self.container}: terminated ({self.reason}, exit code {self.exit_code})\n"
        )


@dataclass
class Scripts:
    """What the simulation was told to make go wrong. Thread-safe."""

    crashloops: dict[tuple[str, str, str], CrashLoop] = field(default_factory=dict)
    image_pull_errors: list[str] = field(default_factory=list)
    never_ready: set[tuple[str, str]] = field(default_factory=set)
    # (namespace, workload) -> the average CPU utilization (% of requests) the resource
    # metrics API reports for its pods; what the HPA controller scales on.
    cpu_utilization: dict[tuple[str, str], int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add_crashloop(self, loop: CrashLoop) -> None:
        with self._lock:
            self.crashloops[(loop.namespace, loop.workload, loop.container)] = loop

    def add_image_pull_error(self, substring: str) -> None:
        with self._lock:
            if substring not in self.image_pull_errors:
                self.image_pull_errors.append(substring)

    def add_never_ready(self, namespace: str, workload: str) -> None:
        with self._lock:
            self.never_ready.add((namespace, workload))

    def clear(self) -> None:
        with self._lock:
            self.crashloops.clear()
            self.image_pull_errors.clear()
            self.never_ready.clear()
            self.cpu_utilization.clear()

    def crashloop_for(self, namespace: str, workloads: list[str], container: str
                      ) -> CrashLoop | None:
        with self._lock:
            for name in workloads:
                found = self.crashloops.get((namespace, name, container))
                if found is not None:
                    return found
        return None

    def pull_fails(self, image: str) -> bool:
        with self._lock:
            return any(sub in image for sub in self.image_pull_errors)

    def is_never_ready(self, namespace: str, workloads: list[str]) -> bool:
        with self._lock:
            return any((namespace, name) in self.never_ready for name in workloads)

    def set_cpu_utilization(self, namespace: str, workload: str, percent: int) -> None:
        if isinstance(percent, bool) or not isinstance(percent, int) or percent < 0:
            raise ValueError("CPU utilization is a whole percentage, 0 or more")
        with self._lock:
            self.cpu_utilization[(namespace, workload)] = percent

    def cpu_utilization_for(self, namespace: str, workloads: list[str]) -> int | None:
        with self._lock:
            for name in workloads:
                if (namespace, name) in self.cpu_utilization:
                    return self.cpu_utilization[(namespace, name)]
        return None


def workloads_of(pod: JSON, lookup: OwnerLookup) -> list[str]:
    """Names a script may use for this pod: the pod itself and its controller chain
    (ReplicaSet, then Deployment; or StatefulSet)."""
    names = [pod["metadata"]["name"]]
    namespace = pod["metadata"].get("namespace", "")
    current = pod
    for _ in range(3):
        owner = next((r for r in current["metadata"].get("ownerReferences") or []
                      if r.get("controller")), None)
        if owner is None:
            break
        names.append(owner["name"])
        parent = lookup(owner["kind"], namespace, owner["name"])
        if parent is None:
            break
        current = parent
    return names
