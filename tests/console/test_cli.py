"""The console front end driven from outside: `opsbot run`, `demo --script`, runbooks, audit."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).parents[2]


def opsbot(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPSBOT_"))}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        capture_output=True,
        text=True,
        input=input_text,
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


@pytest.mark.parametrize(("command", "said"), [
    # The last --env used to win: exit 3, a prod approval request opened.
    ("scale shop-web 3 --env staging --env prod", "`--env` is given twice"),
    ("scale shop-web ٣", "must be a whole number written with the digits 0-9"),
    # An OverflowError out of duration parsing: a traceback and exit 1.
    ("backup create shop-api --ttl 99999999999999h --dry-run", "<ttl> is at most 3650d"),
])
def test_run_refused_input_exit_2(world: dict[str, str], command: str, said: str) -> None:
    result = opsbot("run", command, "--as", "alice", env=world)
    assert result.returncode == 2, result.stdout + result.stderr
    assert said in result.stdout and "request-id" not in result.stdout


def test_run_unknown_user_exit_2(world: dict[str, str]) -> None:
    assert opsbot("run", "status shop-api", "--as", "eve", env=world).returncode == 2


def test_run_refuses_text_no_store_keeps_exit_2(world: dict[str, str]) -> None:
    """Bytes that are not UTF-8 arrive as lone surrogates; the shell's input may hold a NUL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPSBOT_"))}
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "run", b"scale shop-web 3 --reason caf\xe9",
         "--as", "alice"], capture_output=True, text=True, env={**env, **world}, cwd=ROOT,
        timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "cannot record, so nothing ran" in result.stdout
    assert result.stderr == ""
    shell = opsbot("shell", "--as", "alice", env=world,
                   input_text="scale shop-web 3 --reason a\x00b\npending\n")
    assert "a NUL character, which opsbot cannot record" in shell.stdout
    strict = subprocess.run(  # a locale whose stdin would refuse the byte outright
        [sys.executable, "-m", "bot.cli", "shell", "--as", "alice"], capture_output=True,
        input=b"scale shop-web 3 --reason caf\xe9\n",
        env={**env, **world, "PYTHONIOENCODING": "utf-8:strict"}, cwd=ROOT, timeout=120)
    assert strict.returncode == 0 and strict.stderr == b""
    assert b"which opsbot cannot record" in strict.stdout
    audit = opsbot("audit", "export", env=world)
    assert "scale" not in audit.stdout  # nothing ran, nothing was recorded


def test_run_prod_change_awaits_approval_exit_3(world: dict[str, str]) -> None:
    result = opsbot("run", "restart shop-api --env prod", "--as", "alice", env=world)
    assert result.returncode == 3, result.stdout + result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("request-id: rq-")
    request_id = last.removeprefix("request-id: ")
    approved = opsbot("run", f"approve {request_id}", "--as", "bob", env=world)
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert "restarted shop-api" in approved.stdout


def test_run_pending_deny_and_cancel(world: dict[str, str]) -> None:
    ids = []
    for text in ("restart shop-api --env prod", "scale shop-web 4 --env prod"):
        asked = opsbot("run", text, "--as", "alice", env=world)
        assert asked.returncode == 3
        ids.append(asked.stdout.strip().splitlines()[-1].removeprefix("request-id: "))
    listed = opsbot("run", "pending", "--as", "mallory", env=world)
    assert listed.returncode == 0 and all(i in listed.stdout for i in ids)
    denied = opsbot("run", f"deny {ids[0]} wait for the freeze to end", "--as", "carol", env=world)
    assert denied.returncode == 0, denied.stdout
    assert "Denied by carol" in denied.stdout and "wait for the freeze to end" in denied.stdout
    assert opsbot("run", f"cancel {ids[1]}", "--as", "bob", env=world).returncode == 1
    assert opsbot("run", f"cancel {ids[1]}", "--as", "alice", env=world).returncode == 0
    after = opsbot("run", "pending", "--as", "alice", env=world).stdout
    assert not any(i in after for i in ids)


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


# Markup of every kind, mentions, links and emoji, as someone might type them.
HOSTILE = "*b* _i_ ~s~ `tick` <x> & &amp; <!channel> <@U123> <http://x|y> :fire: a_b*c"


def test_values_print_as_typed(tmp_path: Path) -> None:
    """Issue 10, item 3: the console dropped `*` from values (`'0 3   *'`)."""
    script = tmp_path / "demo.txt"
    script.write_text(
        'bob: backup schedule shop-api "0 3 * * *"\n'
        f"alice: status shop-api --reason '{HOSTILE}'\n"
        "alice: status *shop*_api_\n"
        f"alice: restart shop-api --env prod --reason '{HOSTILE}'\n"
        f"bob: deny {{last_request}} '{HOSTILE}'\n",
        encoding="utf-8",
    )
    result = opsbot("demo", "--script", str(script))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "created schedule shop-api-staging: '0 3 * * *'" in out
    assert "Cron: 0 3 * * *" in out
    assert f"reason: {HOSTILE}" in out  # the execution's context line
    assert f"✅ `status shop-api --reason '{HOSTILE}'` in staging: done" in out
    assert "`*shop*_api_` is not a valid app name" in out
    assert f"Requested by alice: {HOSTILE}" in out  # the approval request
    assert "Denied by bob at " in out and out.count(f": {HOSTILE}") >= 3
    assert "\ue000" not in out and "\ue002" not in out  # no markup delimiter leaks


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


def test_runbooks_list_and_schema() -> None:
    listed = opsbot("runbooks", "list")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}
    assert {"status", "diag", "scale", "restart", "deploy", "rollback"} <= rows
    schema = opsbot("runbooks", "schema")
    assert schema.returncode == 0
    published = (ROOT / "docs" / "runbook.schema.json").read_text()
    assert json.loads(schema.stdout) == json.loads(published)


def test_simcluster_command_serves_the_demo_world(tmp_path: Path) -> None:
    """`opsbot simcluster --seed demo` plus the demo config is the demo world for `run`."""
    kubeconfig = tmp_path / "sim.kubeconfig"
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "simcluster", "--listen", "127.0.0.1:0",
         "--kubeconfig", str(kubeconfig), "--seed", "demo"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # printed once the kubeconfig is written
        assert first.startswith("simcluster listening on https://127.0.0.1:"), first
        env = {"OPSBOT_CONFIG": str(ROOT / "examples/demo.yaml"), "KUBECONFIG": str(kubeconfig),
               "OPSBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'opsbot.db'}"}
        result = opsbot("run", "diag shop-worker", "--as", "alice", env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "shop-worker: OOMKilled 7 times in 30 min; memory limit 256Mi" in result.stdout
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


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


EXPORT_FIELDS = {"time", "actor", "source", "command", "environment", "target", "outcome",
                 "execution_id", "request_id"}


def test_audit_export_and_verify(world: dict[str, str]) -> None:
    assert opsbot("run", "scale shop-web 3", "--as", "alice", env=world).returncode == 0
    assert opsbot("run", "scale shop-api 4", "--as", "mallory", env=world).returncode == 1
    assert opsbot("run", "restart shop-api --env prod", "--as", "alice", env=world).returncode == 3
    ok = opsbot("audit", "verify", env=world)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    exported = opsbot("audit", "export", env=world).stdout
    records = [json.loads(line) for line in exported.splitlines()]
    assert all(set(r) >= EXPORT_FIELDS for r in records)
    by_outcome = {r["outcome"]: r for r in records}
    scaled = by_outcome["succeeded"]
    assert (scaled["actor"], scaled["source"], scaled["command"], scaled["environment"],
            scaled["target"]) == ("U0ALICE", "console", "scale shop-web 3", "staging", "shop-web")
    assert scaled["execution_id"].startswith("ex-") and scaled["request_id"] is None
    assert datetime.fromisoformat(scaled["time"]).tzinfo is not None
    denied = by_outcome["denied"]
    assert (denied["actor"], denied["execution_id"]) == ("U0MALLORY", None)
    requested = next(r for r in records if r["request_id"])
    assert requested["environment"] == "prod" and requested["request_id"].startswith("rq-")


@pytest.fixture(scope="module")
def audit_trail(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An audit log written by real commands, once for the module; each tampering test edits
    its own copy (a SQLite file, closed by the commands that wrote it)."""
    from simcluster import SimCluster

    directory = tmp_path_factory.mktemp("audit")
    database = directory / "opsbot.db"
    cluster = SimCluster(seed="demo").start(host="127.0.0.1", port=0)
    try:
        world = {"OPSBOT_CONFIG": str(ROOT / "examples/demo.yaml"),
                 "KUBECONFIG": cluster.write_kubeconfig(str(directory / "kubeconfig")),
                 "OPSBOT_DATABASE_URL": f"sqlite:///{database}"}
        for user, text in [("alice", "scale shop-web 3"), ("mallory", "scale shop-api 4"),
                           ("alice", "status shop-api")]:
            opsbot("run", text, "--as", user, env=world)
        verified = opsbot("audit", "verify", env=world)
        assert verified.returncode == 0, verified.stdout + verified.stderr
    finally:
        cluster.stop()
    return database


@pytest.mark.parametrize(
    ("tamper", "finding"),
    [
        ("UPDATE audit_records SET actor = 'U0BOB' WHERE actor = 'U0MALLORY'", "edited"),
        ("DELETE FROM audit_records WHERE seq = 2", "missing"),
        ("DELETE FROM audit_records WHERE seq = (SELECT MAX(seq) FROM audit_records)", "deleted"),
        (
            "INSERT INTO audit_records SELECT seq + 1000, time, actor, source, command, "
            "environment, target, outcome, execution_id, request_id, details, prev_hash, hash "
            "FROM audit_records WHERE seq = 1",
            "Record 1001",
        ),
        (
            # An inserted record renumbered into the middle of the chain.
            "UPDATE audit_records SET seq = seq + 1 WHERE seq >= 2",
            "Record 2 was edited",
        ),
    ],
    ids=["edited", "deleted", "tail-truncated", "appended-copy", "inserted"],
)
def test_audit_verify_detects_tampering(
    audit_trail: Path, tmp_path: Path, tamper: str, finding: str
) -> None:
    database = tmp_path / "tampered.db"
    shutil.copyfile(audit_trail, database)
    world = {"OPSBOT_CONFIG": str(ROOT / "examples/demo.yaml"),
             "OPSBOT_DATABASE_URL": f"sqlite:///{database}"}
    with sqlite3.connect(database) as conn:
        if "seq + 1 WHERE" in tamper:  # shift from the top down so seq stays unique
            for (seq,) in conn.execute(
                "SELECT seq FROM audit_records WHERE seq >= 2 ORDER BY seq DESC"
            ).fetchall():
                conn.execute("UPDATE audit_records SET seq = ? WHERE seq = ?", (seq + 1, seq))
            conn.execute(
                "INSERT INTO audit_records SELECT 2, time, 'U0EVE', source, command, "
                "environment, target, outcome, execution_id, request_id, details, prev_hash, "
                "hash FROM audit_records WHERE seq = 1"
            )
        else:
            conn.execute(tamper)
    bad = opsbot("audit", "verify", env=world)
    assert bad.returncode == 1, bad.stdout
    assert "TAMPERED" in bad.stdout
    assert finding in bad.stdout, bad.stdout


def test_audit_export_since_filters(world: dict[str, str]) -> None:
    assert opsbot("run", "status shop-web", "--as", "alice", env=world).returncode == 0
    assert opsbot("audit", "export", "--since", "2999-01-01", env=world).stdout == ""
    assert opsbot("audit", "export", "--since", "2000-01-01", env=world).stdout != ""


def test_version_and_help() -> None:
    assert opsbot("--version").stdout.startswith("opsbot ")
    assert "--as" in opsbot("run", "--help").stdout


def closed_stdout(*args: str, env: dict[str, str] | None = None, input_text: str | None = None,
                  timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`opsbot ARGS | head` where head is gone before the first line: stdout is a real pipe
    whose reading end is already closed, so every write to it fails."""
    reading, writing = os.pipe()
    os.close(reading)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPSBOT_"))}
    try:
        return subprocess.run([sys.executable, "-m", "bot.cli", *args], stdout=writing,
                              stderr=subprocess.PIPE, input=input_text, text=True,
                              env={**full_env, **(env or {})}, timeout=timeout, cwd=ROOT)
    finally:
        os.close(writing)


@pytest.mark.parametrize(("args", "code"), [
    (["--version"], 0),
    (["run", "--help"], 0),
    (["run", "status shop-api", "--as", "alice"], 0),
    (["run", "restart shop-api --env prod", "--as", "alice"], 3),
    (["shell", "--as", "alice"], 0),
    (["demo", "--script", "{script}"], 0),
    (["runbooks", "list"], 0),
    (["runbooks", "schema"], 0),
    (["runbooks", "validate"], 0),
    (["audit", "verify"], 0),
    (["audit", "export"], 0),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_a_reader_gone_early_ends_nothing_and_prints_no_traceback(
        world: dict[str, str], tmp_path: Path, args: list[str], code: int) -> None:
    script = tmp_path / "demo.txt"
    script.write_text("alice: status shop-api\nalice: scale shop-web 3\n")
    assert opsbot("run", "scale shop-web 3", "--as", "alice", env=world).returncode == 0
    result = closed_stdout(*[a.format(script=script) for a in args], env=world,
                           input_text="status shop-api\nscale shop-web 4\n")
    assert (result.returncode, result.stderr) == (code, "")
    if args[0] == "shell":  # the shell went on after its output was dropped
        assert "scale shop-web 4" in opsbot("audit", "export", env=world).stdout


def test_serve_and_simcluster_serve_on_without_a_reader(tmp_path: Path, db_url: str) -> None:
    kubeconfig = tmp_path / "sim.kubeconfig"
    reading, writing = os.pipe()
    os.close(reading)
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "simcluster", "--listen", "127.0.0.1:0",
             "--kubeconfig", str(kubeconfig)], stdout=writing, stderr=subprocess.PIPE,
            text=True, cwd=ROOT)
    finally:
        os.close(writing)
    try:
        deadline = time.monotonic() + 60
        while not kubeconfig.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert process.poll() is None, process.communicate()
        env = {"OPSBOT_CONFIG": str(ROOT / "examples/demo.yaml"), "KUBECONFIG": str(kubeconfig),
               "OPSBOT_DATABASE_URL": db_url}
        assert closed_stdout("run", "status shop-api", "--as", "alice", env=env).returncode == 0
        serve_log = serve_without_a_reader(env)
        assert "Traceback" not in serve_log and "Logging error" not in serve_log, serve_log
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 0
        assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def serve_without_a_reader(env: dict[str, str]) -> str:
    """`opsbot serve` with its stdout (where uvicorn writes its access log) closed: it answers
    requests and stops on SIGTERM; returns what it wrote on stderr."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    served = {**{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPSBOT_"))},
              **env, "OPSBOT_LISTEN": f"127.0.0.1:{port}", "SLACK_BOT_TOKEN": "xoxb-t",
              "SLACK_SIGNING_SECRET": "s", "SLACK_API_URL": "http://127.0.0.1:9/api/"}
    reading, writing = os.pipe()
    os.close(reading)
    try:
        process = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve"], stdout=writing,
                                   stderr=subprocess.PIPE, text=True, env=served, cwd=ROOT)
    finally:
        os.close(writing)
    try:
        answered = 0
        deadline = time.monotonic() + 60
        while answered < 3 and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()
            try:
                answered += httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).is_success
            except httpx.TransportError:
                time.sleep(0.1)
        assert answered == 3
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode in (0, -signal.SIGTERM)
        return stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens there once the probe closes


@pytest.mark.parametrize("args", [
    ["serve"], ["run", "status shop-api", "--as", "alice"], ["shell", "--as", "alice"],
    ["audit", "verify"], ["audit", "export"],
], ids=" ".join)
def test_an_unreachable_database_is_one_line_and_exit_2(kubeconfig: Path,
                                                        args: list[str]) -> None:
    port = closed_port()
    url = f"postgresql+psycopg://opsbot:s3cret-pw@127.0.0.1:{port}/opsbot"
    result = opsbot(*args, env={
        "OPSBOT_CONFIG": str(ROOT / "examples/demo.yaml"), "KUBECONFIG": str(kubeconfig),
        "OPSBOT_DATABASE_URL": url, "SLACK_BOT_TOKEN": "xoxb-t", "SLACK_SIGNING_SECRET": "s",
        "OPSBOT_LISTEN": "127.0.0.1:0"}, input_text="status shop-api\n")
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    line = result.stderr.strip()
    assert "s3cret-pw" not in line
    assert f"postgresql+psycopg://opsbot:***@127.0.0.1:{port}/opsbot" in line
    assert f"host 127.0.0.1, port {port}" in line
    assert "Connection refused" in line


def test_a_sqlite_file_that_cannot_be_made_is_one_line_and_exit_2() -> None:
    result = opsbot("audit", "verify", env={"OPSBOT_CONFIG": str(ROOT / "examples/demo.yaml"),
                                            "OPSBOT_DATABASE_URL": "sqlite:////proc/opsbot/x.db"})
    assert result.returncode == 2
    assert result.stderr == ("opsbot: cannot use the database sqlite:////proc/opsbot/x.db: "
                             "No such file or directory\n")


def test_library_logs_stay_below_the_output_unless_verbose(world: dict[str, str],
                                                          tmp_path: Path) -> None:
    ran = opsbot("run", "status shop-api", "--as", "alice", env=world)
    assert (ran.returncode, ran.stderr) == (0, "")
    for args in (["audit", "verify"], ["audit", "export"], ["runbooks", "list"]):
        quiet = opsbot(*args, env=world)
        assert (quiet.returncode, quiet.stderr) == (0, ""), args
    # Alembic logs only while it migrates (a new or current database never loads it): one a
    # migration behind.
    def behind(name: str) -> dict[str, str]:
        from bot.store import migrate
        from bot.store.db import make_engine

        url = f"sqlite:///{tmp_path / name}"
        engine = make_engine(url)
        try:
            migrate.upgrade(engine)
            migrate.downgrade(engine, "0009")
        finally:
            engine.dispose()
        return {**world, "OPSBOT_DATABASE_URL": url}

    verbose = opsbot("audit", "verify", "--verbose", env=behind("fresh.db"))
    assert verbose.stdout == "audit log intact\n"
    assert "alembic" in verbose.stderr
    assert "alembic" in opsbot("-v", "audit", "verify", env=behind("newer.db")).stderr

    script = tmp_path / "demo.txt"  # pausing automation logs a warning for a service's log
    script.write_text("bob: automation pause --for 1h\nalice: status shop-api\n")
    demo = opsbot("demo", "--script", str(script))
    assert (demo.returncode, demo.stderr) == (0, "")
    assert "WARNING" not in demo.stdout and "automation paused" in demo.stdout.lower()
