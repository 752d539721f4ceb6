"""The chart as the tests see it: the values files it is checked with, and one render of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.packaging.tools import CHART

RELEASE, NAMESPACE = "opsbot", "opsbot"
# The values files the chart is checked with: the defaults, then each file in helm/opsbot/ci/.
VALUES = {"defaults": None, **{
    path.name.removesuffix("-values.yaml"): path for path in sorted((CHART / "ci").glob("*.yaml"))
}}


@dataclass
class Render:
    """`helm template` of one values file: its text and every object in it."""

    name: str
    values: dict[str, Any]
    text: str
    objects: list[dict[str, Any]] = field(default_factory=list)

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [o for o in self.all(kind) if name is None or o["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.name}: {len(found)} {kind} objects named {name}"
        return found[0]

    @property
    def pod(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.one("Deployment")["spec"]["template"]["spec"]
        return spec

    @property
    def container(self) -> dict[str, Any]:
        [container] = self.pod["containers"]
        return dict(container)
