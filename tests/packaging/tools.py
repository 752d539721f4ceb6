"""Where the packaging tests find helm, kubectl, checkov and hadolint (`scripts/fetch-tools` puts
them there), and the one way a missing tool ends a test: skipped with the command that fetches
it, or failed when OPSBOT_REQUIRE_REAL=1 (as `.ci/run` sets it)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

__all__ = ["CHART", "ROOT", "require_tool", "run"]

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "opsbot"
FETCH = "scripts/fetch-tools"
# Where scripts/fetch-tools installs each tool.
_PLACES = {
    "helm": ROOT / ".venv" / "bin" / "helm",
    "kubectl": ROOT / ".venv" / "bin" / "kubectl",
    "checkov": ROOT / ".venv-tools" / "bin" / "checkov",
    "hadolint": ROOT / ".venv-tools" / "bin" / "hadolint",
}


def require_tool(name: str) -> str:
    """The tool's path; skip the test when it is missing (fail when real parts are required)."""
    path = _PLACES[name]
    if path.is_file() and os.access(path, os.X_OK):
        return str(path)
    message = f"{name} is not installed at {path.relative_to(ROOT)}: run {FETCH}"
    if os.environ.get("OPSBOT_REQUIRE_REAL") == "1":
        pytest.fail(message)
    pytest.skip(message)


def run(argv: list[str], *, timeout: float = 300, cwd: Path | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a tool, its output captured as text; the caller checks the exit status."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False,
                          cwd=cwd, env=env)
