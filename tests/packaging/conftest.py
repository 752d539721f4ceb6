"""The chart rendered once per values file for the whole session: `helm template` is the slow
part, and every test reads the same objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.packaging.tools import CHART, require_tool, run

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


@pytest.fixture(scope="session")
def helm() -> str:
    return require_tool("helm")


@pytest.fixture(scope="session")
def renders(helm: str) -> dict[str, Render]:
    """Every values file rendered and parsed."""
    result: dict[str, Render] = {}
    for name, path in VALUES.items():
        argv = [helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE]
        values: dict[str, Any] = {}
        if path is not None:
            argv += ["--values", str(path)]
            values = yaml.safe_load(path.read_text()) or {}
        done = run(argv)
        assert done.returncode == 0, f"helm template ({name}) failed:\n{done.stderr}"
        objects = [o for o in yaml.safe_load_all(done.stdout) if o]
        result[name] = Render(name, values, done.stdout, objects)
    return result


@pytest.fixture(scope="session")
def rendered_dir(renders: dict[str, Render], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The renders as files, for the scanners."""
    out = tmp_path_factory.mktemp("manifests")
    for name, render in renders.items():
        (out / f"{name}.yaml").write_text(render.text)
    return out
