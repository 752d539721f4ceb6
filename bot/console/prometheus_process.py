"""A real Prometheus for `opsbot demo`: the installed binary on 127.0.0.1:<free port> with a
temporary TSDB, scraping one target every second, so demo deploys are verified the way
production ones are. Started and stopped by the demo; nothing here outlives it."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import httpx
import yaml

__all__ = [
    "BINARY",
    "JOB",
    "PrometheusProcess",
    "PrometheusStartError",
    "find_binary",
    "free_port",
]

BINARY = "prometheus"
JOB = "simcluster"
SCRAPE_SECONDS = 1
START_TIMEOUT = 15.0
SAMPLES_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
PORT_ATTEMPTS = 3


class PrometheusStartError(Exception):
    """Prometheus did not start or never scraped its target; the message ends with its log."""


def find_binary() -> str | None:
    return shutil.which(BINARY)


def free_port() -> int:
    """A port free on 127.0.0.1 right now (someone may take it before it is bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrometheusProcess:
    """Prometheus scraping `target` (HOST:PORT, which need not be up yet) every second.
    `start()` returns once it is ready, `wait_for_samples()` once it has scraped the target;
    `stop()` terminates it, and kills it if it lingers."""

    def __init__(self, binary: str, workdir: Path, *, target: str, metrics_path: str,
                 bearer_token: str) -> None:
        self.binary = binary
        self.workdir = workdir
        self.target = target
        self.metrics_path = metrics_path
        self.bearer_token = bearer_token
        self.port = 0
        self.log_path = workdir / "prometheus.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = START_TIMEOUT) -> PrometheusProcess:
        """Launch it and wait until it answers /-/ready (well under a second)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        for _ in range(PORT_ATTEMPTS):  # another process may take the port we picked
            self.port = free_port()
            with self.log_path.open("ab") as log:
                self._proc = subprocess.Popen(
                    [self.binary, *self._args(config)], stdin=subprocess.DEVNULL,
                    stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                )
            try:
                self._wait(time.monotonic() + timeout, self._ready, "did not become ready")
                return self
            except PrometheusStartError:
                self.stop()
                if "address already in use" not in self.log():
                    raise
        raise PrometheusStartError(f"no free port after {PORT_ATTEMPTS} attempts{self._tail()}")

    def wait_for_samples(self, timeout: float = SAMPLES_TIMEOUT) -> None:
        """Until the first scrape of the target is stored. Prometheus 2.x hands new targets
        to its scrape loop only after about five seconds, so start it early."""
        self._wait(time.monotonic() + timeout, self._scraped, "did not scrape its target")

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def __enter__(self) -> PrometheusProcess:
        if self._proc is None:
            self.start()
        self.wait_for_samples()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _write_config(self) -> Path:
        token = self.workdir / "scrape-token"
        token.write_text(self.bearer_token)
        token.chmod(0o600)
        config = {
            "global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "scrape_timeout": "1s",
                       "evaluation_interval": f"{SCRAPE_SECONDS}s"},
            "scrape_configs": [{
                "job_name": JOB,
                "scheme": "http",
                "metrics_path": self.metrics_path,
                "authorization": {"type": "Bearer", "credentials_file": str(token)},
                "static_configs": [{"targets": [self.target]}],
            }],
        }
        path = self.workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def _args(self, config: Path) -> list[str]:
        return [
            f"--config.file={config}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1d",
            "--log.level=warn",
        ]

    def _wait(self, deadline: float, done: Callable[[httpx.Client], bool], what: str) -> None:
        with httpx.Client(timeout=2.0) as http:
            while time.monotonic() < deadline:
                if self._proc is None or self._proc.poll() is not None:
                    raise PrometheusStartError(f"prometheus exited{self._tail()}")
                try:
                    if done(http):
                        return
                except (httpx.TransportError, ValueError, KeyError):
                    pass
                time.sleep(0.05)
        raise PrometheusStartError(f"prometheus {what} in time{self._tail()}")

    def _ready(self, http: httpx.Client) -> bool:
        return http.get(f"{self.url}/-/ready").status_code == 200

    def _scraped(self, http: httpx.Client) -> bool:
        answer = http.get(f"{self.url}/api/v1/query", params={"query": f'up{{job="{JOB}"}} == 1'})
        return answer.status_code == 200 and bool(answer.json()["data"]["result"])

    def _tail(self) -> str:
        log = self.log().strip()
        return f"; its log ends:\n{log[-2000:]}" if log else ""
