"""The console front end driven from outside: `opsbot run`, `demo --script`, runbooks, audit."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def opsbot(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPSBOT_"))}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=ROOT,
    )


@pytest.fixture
def world(kubeconfig: Path, db_url: str) -> dict[str, str]:
    return {
        "OPSBOT_CONFIG": str(ROOT / "examples/demo.yaml"),
        "KUBECONFIG": str(kubeconfig),
        "OPSBOT_DATABASE_URL": db_url,
    }


def test_run_status_exit_0(world: dict[str, str]) -> None:
    result = opsbot("run", "status shop-api", "--as", "alice", env=world)
    assert result.returncode == 0, result.stderr
    assert "registry.example.com/shop/api:1.4.0" in result.stdout
    assert "✅ `status shop-api` in staging: done" in result.stdout


def test_run_failed_command_exit_1(world: dict[str, str]) -> None:
    result = opsbot("run", "scale shop-api 4", "--as", "mallory", env=world)
    assert result.returncode == 1
    assert "mallory may not run `scale`" in result.stdout


def test_run_usage_error_exit_2(world: dict[str, str]) -> None:
    result = opsbot("run", "sacle shop-api 4", "--as", "alice", env=world)
    assert result.returncode == 2
    assert "did you mean `scale`" in result.stdout


def test_run_unknown_user_exit_2(world: dict[str, str]) -> None:
    assert opsbot("run", "status shop-api", "--as", "eve", env=world).returncode == 2


def test_run_prod_change_awaits_approval_exit_3(world: dict[str, str]) -> None:
    result = opsbot("run", "restart shop-api --env prod", "--as", "alice", env=world)
    assert result.returncode == 3, result.stdout + result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("request-id: rq-")
    request_id = last.removeprefix("request-id: ")
    approved = opsbot("run", f"approve {request_id}", "--as", "bob", env=world)
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert "restarted shop-api" in approved.stdout


def test_demo_script_approval_flow(tmp_path: Path) -> None:
    script = tmp_path / "demo.txt"
    script.write_text(
        "alice: deploy shop-api 1.5.0 --env prod\n"
        "alice: approve {last_request}\n"
        "mallory: approve {last_request}\n"
        "bob: approve {last_request}\n"
        "alice: status shop-api --env prod\n"
    )
    result = opsbot("demo", "--script", str(script))
    out = result.stdout
    assert "awaiting approval" in out
    assert "you cannot approve your own request" in out
    assert "mallory may not approve" in out
    assert "registry.example.com/shop/api:1.5.0" in out.split("alice> status shop-api")[-1]


def test_demo_script_transcript(tmp_path: Path) -> None:
    script = tmp_path / "demo.txt"
    script.write_text(
        "# a tour\n"
        "alice: status shop-api\n"
        "alice: diag shop-worker\n"
        "alice: scale shop-web 3\n"
        "bob: restart shop-api\n"
        "mallory: scale shop-api 5\n"
    )
    result = opsbot("demo", "--script", str(script))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "alice> status shop-api" in out
    assert "shop-worker: OOMKilled 7 times in 30 min; memory limit 256Mi" in out
    assert "scaled shop-web from 2 to 3 replicas" in out
    assert "restarted shop-api" in out
    assert "mallory may not run `scale` in `staging`" in out


def test_demo_script_bad_line(tmp_path: Path) -> None:
    script = tmp_path / "demo.txt"
    script.write_text("status shop-api\n")
    result = opsbot("demo", "--script", str(script))
    assert result.returncode == 1
    assert "expected `USER: command`" in result.stdout


def test_runbooks_validate_reports_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text(
        "name: broken\ndescription: x\nsteps:\n  - name: s\n    handler: k8s.nope\n"
    )
    result = opsbot("runbooks", "validate", str(tmp_path))
    assert result.returncode == 2
    assert f"{tmp_path / 'broken.yaml'}:5:" in result.stderr
    assert "unknown handler `k8s.nope`" in result.stderr


def test_runbooks_validate_ok() -> None:
    result = opsbot("runbooks", "validate")
    assert result.returncode == 0
    assert "runbooks valid" in result.stdout


def test_serve_refuses_invalid_runbook(tmp_path: Path, db_url: str) -> None:
    (tmp_path / "broken.yaml").write_text("name: broken\ndescription: x\nsteps: []\n")
    config = tmp_path / "opsbot.yaml"
    config.write_text((ROOT / "examples/demo.yaml").read_text() + f"\nrunbook_dirs: [{tmp_path}]\n")
    result = opsbot(
        "serve",
        env={
            "OPSBOT_CONFIG": str(config),
            "OPSBOT_DATABASE_URL": db_url,
            "SLACK_SIGNING_SECRET": "s",
            "SLACK_BOT_TOKEN": "xoxb-t",
            "OPSBOT_LISTEN": "127.0.0.1:0",
        },
        timeout=60,
    )
    assert result.returncode == 2
    assert f"{tmp_path / 'broken.yaml'}:3:" in result.stderr


def test_audit_verify_and_detect_tampering(world: dict[str, str], db_url: str) -> None:
    assert opsbot("run", "scale shop-web 3", "--as", "alice", env=world).returncode == 0
    assert opsbot("run", "scale shop-api 4", "--as", "mallory", env=world).returncode == 1
    ok = opsbot("audit", "verify", env=world)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    export = opsbot("audit", "export", env=world)
    lines = export.stdout.splitlines()
    assert any('"outcome": "denied"' in line and '"actor": "U0MALLORY"' in line for line in lines)
    assert any('"outcome": "succeeded"' in line for line in lines)
    path = db_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        table = _audit_table(conn)
        conn.execute(f"UPDATE {table} SET actor = 'U0BOB' WHERE actor = 'U0MALLORY'")
    bad = opsbot("audit", "verify", env=world)
    assert bad.returncode == 1
    assert "TAMPERED" in bad.stdout


def test_audit_export_since_filters(world: dict[str, str]) -> None:
    assert opsbot("run", "status shop-web", "--as", "alice", env=world).returncode == 0
    assert opsbot("audit", "export", "--since", "2999-01-01", env=world).stdout == ""
    assert opsbot("audit", "export", "--since", "2000-01-01", env=world).stdout != ""


def test_version_and_help() -> None:
    assert opsbot("--version").stdout.startswith("opsbot ")
    assert "--as" in opsbot("run", "--help").stdout


def _audit_table(conn: sqlite3.Connection) -> str:
    names = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    return next(n for n in names if "audit" in n and "head" not in n)
