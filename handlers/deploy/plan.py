"""A plan says exactly what a deploy or rollback will change; its digest binds approvals to it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["Change", "Plan"]


@dataclass(frozen=True)
class Change:
    what: str  # "image (api)", "revision", "replicas", "sync revision"
    before: str
    after: str


@dataclass(frozen=True)
class Plan:
    """What will change, from what to what; strategies fill `details` with what they need."""

    action: Literal["deploy", "rollback"]
    strategy: Literal["kubernetes", "argocd", "argo-rollouts"]
    app: str
    environment: str
    namespace: str
    kind: str  # Deployment | StatefulSet | Rollout | Application
    target: str  # the object name
    current_revision: str | None
    changes: tuple[Change, ...]
    replicas: int | None = None
    target_revision: str | None = None  # rollback: the revision being restored
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def is_noop(self) -> bool:
        return all(c.before == c.after for c in self.changes)

    def digest(self) -> str:
        """sha256 over the canonical JSON of the plan; equal plans have equal digests."""
        text = json.dumps(self.to_data(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def fields(self) -> tuple[tuple[str, str], ...]:
        rows = [(c.what.capitalize(), f"{c.before} → {c.after}") for c in self.changes]
        rows.append(("Target", f"{self.kind} {self.namespace}/{self.target} ({self.strategy})"))
        if self.current_revision:
            rows.append(("Current revision", self.current_revision))
        if self.replicas is not None:
            rows.append(("Replicas", str(self.replicas)))
        rows.append(("Plan", self.digest()[:12]))
        return tuple(rows)

    def to_data(self) -> dict[str, Any]:
        data = asdict(self)
        data["changes"] = [asdict(c) for c in self.changes]
        return data

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Plan:
        values = dict(data)
        values["changes"] = tuple(Change(**c) for c in values.get("changes", ()))
        return cls(**values)
