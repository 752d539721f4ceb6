"""A plain `pip install .` must carry the runbooks, migrations and demo world, not only the code."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    [built] = list(out.glob("opsbot-*.whl"))
    return built


def test_wheel_holds_data_files(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for runbook in (ROOT / "runbooks").glob("*.yaml"):
        assert f"runbooks/{runbook.name}" in names
    assert "bot/examples/demo.yaml" in names
    assert "bot/examples/demo-alert-rules.yaml" in names  # the demo's Prometheus loads it
    assert "bot/store/migrations/env.py" in names
    assert "bot/store/migrations/script.py.mako" in names
    assert any(n.startswith("bot/store/migrations/versions/0001") for n in names)
    assert "simcluster/seed.py" in names
    assert any(n.endswith("entry_points.txt") for n in names)
    # Every package of the source tree ships (the package list in pyproject.toml is by hand).
    for init in [*(ROOT / "bot").rglob("__init__.py"), *(ROOT / "handlers").rglob("__init__.py")]:
        relative = init.relative_to(ROOT).as_posix()
        assert relative in names, f"{relative} is not in the wheel: add its package"


def test_installed_wheel_runs_the_demo(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    script = tmp_path / "tour.txt"
    script.write_text("alice: status shop-api\nalice: scale shop-web 3\n")
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run(
        [sys.executable, "-c",
         "import bot, sys; assert bot.__file__.startswith(sys.argv[1]), bot.__file__;"
         "from bot.cli import main; sys.exit(main(['demo', '--script', sys.argv[2]]))",
         str(site), str(script)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "registry.example.com/shop/api:1.4.0" in result.stdout
    assert "scaled shop-web from 2 to 3 replicas" in result.stdout
