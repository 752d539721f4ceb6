"""The chart rendered once per values file for the whole session: `helm template` is the slow
part, and every test reads the same objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.packaging.chart import NAMESPACE, RELEASE, VALUES, Render
from tests.packaging.tools import CHART, require_tool, run


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
