"""`opsbot demo` shows the alert path with a real Alertmanager: Prometheus evaluates the demo's
rules over the simulated cluster, Alertmanager posts what fires to the demo's loopback intake,
and the console prints it between commands; `silence` makes a real silence. Without the binary
the demo says alerts are off. The servers are the demo's children, on 127.0.0.1 only, and go
with it."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from bot.console.demo import demo_world
from bot.console.session import run_command
from tests.console.test_demo_verify import transcripts
from tests.support.prometheus import ALERTMANAGER_BIN, PROMETHEUS_BIN, require_binary

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "examples" / "demo-alerts.txt"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def bin_dir(tmp_path: Path, *binaries: str) -> str:
    """A PATH directory holding only these binaries (links to the installed ones)."""
    directory = tmp_path / "bin"
    directory.mkdir(exist_ok=True)
    for binary in binaries:
        (directory / Path(binary).name).symlink_to(binary)
    return str(directory)


def run_demo(script: Path, tmp_path: Path, path: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPSBOT_"))}
    for name in ("PROMETHEUS_URL", "ALERTMANAGER_URL"):
        env.pop(name, None)
    env["OPSBOT_ATTACHMENTS_DIR"] = str(tmp_path / "files")
    env["PATH"] = path
    env["TMPDIR"] = str(tmp_path)  # the demo's own temporary directory lands here
    return subprocess.run([sys.executable, "-m", "bot.cli", "demo", "--script", str(script)],
                          capture_output=True, text=True, env=env, timeout=240, cwd=ROOT)


def test_bad_deploy_fires_an_alert_in_the_console_and_silence_works(tmp_path: Path) -> None:
    prometheus = require_binary(PROMETHEUS_BIN, "prometheus")
    alertmanager = require_binary(ALERTMANAGER_BIN, "prometheus-alertmanager")
    result = run_demo(EXAMPLE, tmp_path, bin_dir(tmp_path, prometheus, alertmanager))
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    lines = out.splitlines()
    assert "deploys are verified" in lines[0]
    assert re.fullmatch(r"Alertmanager at http://127\.0\.0\.1:\d+ posts the demo's alerts to "
                        r"this console: alerts are on and `silence` works", lines[1]), lines[1]

    # The crash-looping worker's alert reached the console, and its runbook ran on its own.
    assert "🚨 FIRING KubePodCrashLooping in staging" in out
    assert re.search(r"^🔴 KubePodCrashLooping shop-worker in staging: Pod is crash looping\.",
                     out, flags=re.MULTILINE)
    assert "✅ `run alert-crashloop app=shop-worker" in out
    assert "[Silence 1h] silence KubePodCrashLooping" in out

    parts = transcripts(out)
    silence = parts['silence KubePodCrashLooping --for 1h --reason "worker memory fix in review"']
    assert "✅ Silence: silenced KubePodCrashLooping in shop-staging for 1h" in silence
    assert re.search(rf"Silence id: {UUID}$", silence, flags=re.MULTILINE), silence

    # The bad release: its own transcript is whole, the alert follows it, then resolves.
    deploy = parts["deploy shop-api 1.6.0"]
    own, _, after = deploy.partition("❌ `deploy shop-api 1.6.0` in staging: failed")
    assert "✅ Roll back automatically" in own and "🚨" not in own, deploy
    assert "🚨 FIRING HighErrorRate in staging" in after
    assert re.search(r"^🔴 HighErrorRate shop-api in staging: shop-api answers more than 5% of "
                     r"requests with 5xx", after, flags=re.MULTILINE), after
    assert "🚨 RESOLVED HighErrorRate in staging" in after
    assert "❌ line" not in out  # every wait was met
    assert not list(tmp_path.glob("opsbot-demo-*")), "the demo left its directory behind"


def test_without_alertmanager_the_demo_says_alerts_are_off(tmp_path: Path) -> None:
    prometheus = require_binary(PROMETHEUS_BIN, "prometheus")
    script = tmp_path / "alerts.txt"
    script.write_text("wait alert HighErrorRate\nalice: silence HighErrorRate --for 1h\n")
    result = run_demo(script, tmp_path, bin_dir(tmp_path, prometheus))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "deploys are verified" in lines[0]
    assert lines[1] == ("Alertmanager is not installed: alerts are off and `silence` cannot "
                        "work (apt-get install prometheus-alertmanager to see alerts)")
    assert sum("alerts are off" in line for line in lines) == 2  # the notice and the skip
    assert "⏭ line 1: alerts are off in this demo; not waiting for HighErrorRate" in lines
    assert "silences need Alertmanager: set ALERTMANAGER_URL" in result.stdout


def test_deploy_precheck_reads_critical_alerts_and_silence_lifts_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prometheus = require_binary(PROMETHEUS_BIN, "prometheus")
    alertmanager = require_binary(ALERTMANAGER_BIN, "prometheus-alertmanager")
    monkeypatch.setenv("PATH", bin_dir(tmp_path, prometheus, alertmanager))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    printed: list[str] = []
    with demo_world(tell=printed.append, write=printed.append) as demo:
        assert demo.alerts is not None, printed
        url = demo.services.settings.alertmanager_url
        # A critical alert for shop-api, sent to the demo's Alertmanager as Prometheus sends.
        labels = {"alertname": "HighErrorRate", "namespace": "shop-staging",
                  "deployment": "shop-api", "app": "shop-api", "severity": "critical"}
        httpx.post(f"{url}/api/v2/alerts", json=[{"labels": labels, "annotations": {
            "summary": "shop-api answers more than 5% of requests with 5xx"}}],
            timeout=10).raise_for_status()
        board = demo.alerts

        async def session() -> list[str]:
            statuses = []
            # Alertmanager posts it to the demo's intake, and the console shows it.
            assert await board.wait_shown("HighErrorRate", timeout=60), printed
            for text in ("deploy shop-api 1.5.0 --dry-run", "silence HighErrorRate --for 1h",
                         "deploy shop-api 1.5.0 --dry-run"):
                outcome = await run_command(demo.services, text, "alice", printed.append)
                statuses.append(outcome.status)
            return statuses

        assert asyncio.run(demo.run(session())) == ["failed", "succeeded", "succeeded"], printed
    text = "\n".join(printed)
    assert "🚨 FIRING HighErrorRate in staging" in text
    first, _, second = text.partition("✅ Silence: silenced HighErrorRate in shop-staging for 1h")
    assert ("❌ Pre-checks: critical alert firing for shop-api in staging: HighErrorRate; "
            "resolve it or silence it first") in first
    assert ("✅ Pre-checks: pre-checks passed for shop-api in staging: registry.example.com/shop/"
            "api:1.5.0 is in its registry, no critical alerts") in second


def test_an_alertmanager_that_does_not_start_turns_alerts_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prometheus = require_binary(PROMETHEUS_BIN, "prometheus")
    path = bin_dir(tmp_path, prometheus)
    broken = Path(path) / "prometheus-alertmanager"
    broken.write_text("#!/bin/sh\necho 'level=error msg=\"bad config\"'\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setenv("PATH", path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    notes: list[str] = []
    with demo_world(tell=notes.append) as demo:
        assert demo.alerts is None and demo.intake is None
        assert demo.services.settings.alertmanager_url is None
    assert "deploys are verified" in notes[0]
    assert notes[1] == ('Alertmanager did not start (alertmanager exited: level=error '
                        'msg="bad config"): alerts are off')
    assert len(notes) == 2


def _children(parent: int | None = None) -> dict[int, str]:
    """The child processes of `parent` (default: this process): pid -> command line."""
    parent = os.getpid() if parent is None else parent
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == parent:
            found[int(stat.parent.name)] = cmdline.replace(b"\0", b" ").decode()
    return found


def _listening(pid: int) -> set[str]:
    """The local addresses (HOST:PORT, hex as /proc writes them) `pid` listens on over TCP."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            cols = row.split()
            if cols[3] == "0A" and cols[9] in inodes:  # LISTEN
                addresses.add(cols[1])
    return addresses


def test_servers_listen_on_loopback_only_and_go_with_the_demo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prometheus = require_binary(PROMETHEUS_BIN, "prometheus")
    alertmanager = require_binary(ALERTMANAGER_BIN, "prometheus-alertmanager")
    if not Path("/proc/net/tcp").exists():
        pytest.skip("needs Linux's /proc to see what the servers listen on")
    monkeypatch.setenv("PATH", bin_dir(tmp_path, prometheus, alertmanager))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # gettempdir() caches TMPDIR
    notes: list[str] = []
    with pytest.raises(RuntimeError, match="a command broke"), \
            demo_world(tell=notes.append, write=lambda _text: None) as demo:
        assert demo.alerts is not None, notes
        settings = demo.services.settings
        assert settings.alertmanager_url and settings.alertmanager_token
        [workdir] = tmp_path.glob("opsbot-demo-*")
        servers = {pid: cmd for pid, cmd in _children().items() if str(workdir) in cmd}
        assert len(servers) == 2, servers
        for pid, cmd in servers.items():
            addresses = _listening(pid)
            assert addresses, cmd
            # 0100007F is 127.0.0.1 in /proc's byte order; anything else (0.0.0.0, ::) is out.
            assert all(a.startswith("0100007F:") for a in addresses), (cmd, addresses)
        raise RuntimeError("a command broke")
    assert not workdir.exists()
    assert not set(servers) & set(_children()), "a server outlived the demo"


def test_sigterm_stops_the_demo_and_its_servers(tmp_path: Path) -> None:
    prometheus = require_binary(PROMETHEUS_BIN, "prometheus")
    alertmanager = require_binary(ALERTMANAGER_BIN, "prometheus-alertmanager")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPSBOT_"))}
    env["PATH"] = bin_dir(tmp_path, prometheus, alertmanager)
    env["TMPDIR"] = str(tmp_path)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONFAULTHANDLER"] = "1"  # SIGABRT shows where a demo that does not end is stuck
    demo = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "demo"], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    try:
        assert demo.stdout is not None
        seen = []
        for line in demo.stdout:  # the shell's greeting: everything has started
            seen.append(line)
            if line.startswith("opsbot shell as alice"):
                break
        servers = list(_children(demo.pid))
        assert len(servers) == 2, "".join(seen)
        demo.send_signal(signal.SIGTERM)
        try:
            status = demo.wait(60)
        except subprocess.TimeoutExpired:
            demo.send_signal(signal.SIGABRT)
            rest, _ = demo.communicate(timeout=30)
            pytest.fail("the demo did not end on SIGTERM; its output and threads:\n"
                        + "".join(seen) + rest[-20_000:])
        assert status == 128 + signal.SIGTERM
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in servers) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in servers if Path(f"/proc/{pid}").exists()]
    for pid in left:  # not to leave them running on a shared machine when this fails
        os.kill(pid, signal.SIGKILL)
    assert not left, "a server outlived the demo"
    assert not list(tmp_path.glob("opsbot-demo-*"))



SIGTERM_MID_CALLBACK = """
import asyncio, os, signal
from bot.console.demo import demo_world

seen = []

def callback():
    os.kill(os.getpid(), signal.SIGTERM)
    seen.append("the callback went on")  # a SIGTERM raised where it lands would cut it here

async def work():
    try:
        asyncio.get_running_loop().call_soon(callback)
        await asyncio.sleep(60)
    finally:
        seen.append("the work's cleanup ran on its loop")

try:
    with demo_world(tell=lambda _line: None, write=lambda _text: None) as demo:
        asyncio.run(demo.run(work()))
finally:
    print(*seen, sep="\\n", flush=True)
"""


def test_sigterm_cancels_the_demos_work_rather_than_cutting_a_loop_callback(
        tmp_path: Path) -> None:
    # As Ctrl-C in asyncio.run: an exception raised wherever the signal lands could stop a
    # store write or a message halfway, and leave what waits on it waiting.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPSBOT_"))}
    env["PATH"] = bin_dir(tmp_path)  # no Prometheus, no Alertmanager: the quick demo
    env["TMPDIR"] = str(tmp_path)
    done = subprocess.run([sys.executable, "-c", SIGTERM_MID_CALLBACK], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=120)
    assert done.returncode == 128 + signal.SIGTERM, done.stderr[-3000:]
    assert done.stdout.splitlines() == ["the callback went on",
                                        "the work's cleanup ran on its loop"], done.stderr[-3000:]
    assert not list(tmp_path.glob("opsbot-demo-*"))
