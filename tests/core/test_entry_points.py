"""Third-party handler packages: real distributions (a `*.dist-info` directory with
`entry_points.txt` on a path entry, as pip installs them) registering through the entry-point
group `opsbot.handlers`, listed by `opsbot runbooks list`, and stopping startup when broken."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.markup import plain
from bot.registry import BUILTIN, Registry

ROOT = Path(__file__).parents[2]

TEAM_HANDLERS = '''
"""A team's own step."""
from bot.registry import Params, Result, handler


class GreetParams(Params):
    who: str


@handler("team.greet", params=GreetParams)
async def greet(*, ctx, params, **_):
    """Greet someone from the team's package."""
    return Result(summary=f"hello {params.who}")
'''


def install(root: Path, dist: str, module: str, source: str, *, point: str | None = None,
            value: str | None = None) -> Path:
    """Lay out an installed distribution as pip does: the module and `<dist>-1.0.dist-info`."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(source)
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[opsbot.handlers]\n{point or module} = {value or module}\n")
    importlib.invalidate_caches()
    return root


def opsbot(*args: str, path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPSBOT_"))}
    full["PYTHONPATH"] = os.pathsep.join([str(path), str(ROOT)])
    full.update(env)
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], capture_output=True,
                          text=True, env=full, cwd=ROOT, timeout=120)


def test_an_installed_package_registers_its_handlers(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = install(tmp_path / "site", "acme-opsbot-steps", "acme_steps", TEAM_HANDLERS)
    monkeypatch.syspath_prepend(str(path))
    registry = Registry.installed()
    assert "team.greet" in registry
    assert registry.origin("team.greet") == "acme-opsbot-steps"
    assert registry.origin("k8s.scale") == BUILTIN
    assert "team.greet" not in Registry.builtin()


def test_runbooks_list_shows_each_handler_and_where_it_comes_from(tmp_path: Path) -> None:
    path = install(tmp_path / "site", "acme-opsbot-steps", "acme_steps", TEAM_HANDLERS)
    listed = opsbot("runbooks", "list", path=path)
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line.split() for line in listed.stdout.splitlines() if line.strip()}
    assert rows["team.greet"][1:3] == ["acme-opsbot-steps", "read-only"]
    assert rows["k8s.scale"][1:3] == ["built-in", "mutating"]
    assert rows["http.request"][1:3] == ["built-in", "mutating"]
    assert rows["notify"][1:3] == ["built-in", "read-only"]
    assert "status" in rows  # the runbooks are still listed above the handlers


def test_a_runbook_may_use_a_third_party_step(tmp_path: Path) -> None:
    path = install(tmp_path / "site", "acme-opsbot-steps", "acme_steps", TEAM_HANDLERS)
    runbooks = tmp_path / "runbooks"
    runbooks.mkdir()
    (runbooks / "greet.yaml").write_text(
        "name: greet\ndescription: say hello\nsteps:\n"
        "  - name: Greet\n    handler: team.greet\n    with: {who: ops}\n")
    assert opsbot("runbooks", "validate", str(runbooks), path=path).returncode == 0
    # Without the package the same runbook names an unknown handler: nothing is guessed.
    missing = opsbot("runbooks", "validate", str(runbooks), path=tmp_path / "nothing")
    assert missing.returncode == 2
    assert "unknown handler `team.greet`" in missing.stderr


def test_a_package_that_fails_to_import_stops_startup(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = install(tmp_path / "site", "broken-steps", "broken_steps",
                   "import a_module_nobody_installed\n")
    monkeypatch.syspath_prepend(str(path))
    with pytest.raises(ConfigError) as caught:
        Registry.installed()
    text = plain(str(caught.value))
    assert ("handler entry point `broken_steps` (`broken_steps`) of distribution "
            "`broken-steps` failed to import") in text
    assert "ModuleNotFoundError" in text
    listed = opsbot("runbooks", "list", path=path)
    assert listed.returncode == 2
    assert "broken-steps" in listed.stderr and listed.stdout == ""


def test_an_entry_point_naming_no_module_stops_startup(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = install(tmp_path / "site", "odd-steps", "odd_steps", TEAM_HANDLERS,
                   value="odd_steps:greet")
    monkeypatch.syspath_prepend(str(path))
    with pytest.raises(ConfigError, match="not a module"):
        Registry.installed()


def test_a_package_may_not_take_a_built_in_handlers_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = TEAM_HANDLERS.replace('"team.greet"', '"k8s.scale"')
    path = install(tmp_path / "site", "clashing-steps", "clashing_steps", source)
    monkeypatch.syspath_prepend(str(path))
    with pytest.raises(ConfigError) as caught:
        Registry.installed()
    text = plain(str(caught.value))
    assert "handler `k8s.scale` is registered twice: by built-in and by clashing-steps" in text
