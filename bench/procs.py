"""Processes the bench starts on loopback: the world (simulated cluster + Slack stand-in),
`opsbot serve` on the demo config, the baselines; their memory read from /proc."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.signing import SIGNING_SECRET
from tests.support.slack_standin import BOT_TOKEN

__all__ = ["ROOT", "Proc", "World", "free_port", "rss_mb", "start_baseline", "start_serve"]

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = ROOT / "examples" / "demo.yaml"
ALERTMANAGER_TOKEN = "bench-alertmanager-token"
PG_BASE_URL = os.environ.get("OPSBOT_BENCH_POSTGRES_URL",
                             "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def child_env(**extra: str) -> dict[str, str]:
    """The bench's environment without any SLACK_*/OPSBOT_* of the caller's, with this
    checkout first on the path (the child runs this tree's code, not an installed copy)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPSBOT_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.update(extra)
    return env


def proc_status(pid: int, key: str) -> float | None:
    """A `VmRSS`/`VmHWM` line of /proc/PID/status in MB (None when the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


def rss_mb(pid: int) -> float | None:
    return proc_status(pid, "VmRSS")


@dataclass
class Proc:
    """A started process serving HTTP on 127.0.0.1:`port`."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    started: float  # time.monotonic() just before it was started
    ready_seconds: float | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, path: str = "/healthz", timeout: float = 90.0) -> float:
        """Seconds from the start to the first 200 on `path` (polled every 10 ms)."""
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=5) as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited early; see {self.log}:\n"
                                       + self.log.read_text(errors="replace")[-3000:])
                try:
                    if http.get(self.url + path).status_code == 200:
                        self.ready_seconds = time.monotonic() - self.started
                        return self.ready_seconds
                except httpx.TransportError:
                    pass
                time.sleep(0.01)
        raise TimeoutError(f"{self.name}: {path} not 200 within {timeout}s; see {self.log}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _spawn(name: str, argv: list[str], workdir: Path, env: dict[str, str], port: int) -> Proc:
    log = workdir / f"{name}.log"
    with log.open("ab") as out:
        started = time.monotonic()
        process = subprocess.Popen([sys.executable, *argv], env=env, cwd=workdir,
                                   stdout=out, stderr=out)
    return Proc(name, process, port, log, started)


class World:
    """The simulated cluster and the Slack stand-in, in their own process."""

    def __init__(self, workdir: Path) -> None:
        info_file = workdir / "world.json"
        self.proc = _spawn("world", ["-m", "bench.world", str(info_file)], workdir,
                           child_env(), 0)
        deadline = time.monotonic() + 60
        while not info_file.exists():
            if self.proc.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the bench world did not start; see "
                                   f"{self.proc.log}:\n" + self.proc.log.read_text()[-3000:])
            time.sleep(0.05)
        info = json.loads(info_file.read_text())
        self.kubeconfig: str = info["kubeconfig"]
        self.slack_api_url: str = info["slack_api_url"]
        self.calls_url: str = info["calls_url"]
        self._http = httpx.Client(timeout=30)

    def calls(self, since: int = 0) -> tuple[int, list[dict[str, Any]]]:
        """The Slack Web API calls the stand-in had from index `since`, and the next index."""
        answer = self._http.get(self.calls_url, params={"since": since}).json()
        return int(answer["next"]), list(answer["calls"])

    def stop(self) -> None:
        self._http.close()
        self.proc.stop()


def start_serve(world: World, workdir: Path, name: str, database_url: str | None = None,
                python_flags: tuple[str, ...] = (), **env: str) -> Proc:
    """`opsbot serve` on the demo config against `world`, as an operator starts it."""
    port = free_port()
    database_url = database_url or f"sqlite:///{workdir / (name + '.db')}"
    environ = child_env(
        OPSBOT_CONFIG=str(DEMO_CONFIG),
        KUBECONFIG=world.kubeconfig,
        OPSBOT_DATABASE_URL=database_url,
        OPSBOT_LISTEN=f"127.0.0.1:{port}",
        OPSBOT_ALERTMANAGER_TOKEN=ALERTMANAGER_TOKEN,
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=world.slack_api_url,
        **env,
    )
    proc = _spawn(name, [*python_flags, "-m", "bot.cli", "serve"], workdir, environ, port)
    proc.info["database_url"] = database_url
    return proc


def start_baseline(kind: str, workdir: Path) -> Proc:
    port = free_port()
    proc = _spawn(kind, ["-m", "bench.baselines", kind, str(port)], workdir, child_env(), port)
    proc.wait_ready()
    return proc


def new_pg_schema() -> tuple[str, str]:
    """A fresh schema on the bench's PostgreSQL: (its name, a URL that uses it)."""
    from sqlalchemy import create_engine, make_url, text

    schema = f"opsbot_bench_{os.getpid()}_{secrets.token_hex(3)}"
    engine = create_engine(PG_BASE_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    finally:
        engine.dispose()
    url = make_url(PG_BASE_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    return schema, url.render_as_string(hide_password=False)


def drop_pg_schema(schema: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(PG_BASE_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        engine.dispose()
