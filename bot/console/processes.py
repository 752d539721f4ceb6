"""The real servers `opsbot demo` runs next to itself (Prometheus, Alertmanager): an installed
binary on 127.0.0.1:<free port> with its files in the demo's temporary directory, its output in
a log file, and ready once it answers `/-/ready`. They are the demo's children and nothing here
outlives it: `stop()` ends one, and on Linux a child is also ended when the demo dies."""

from __future__ import annotations

import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, Self

import httpx
import yaml

__all__ = ["ServerProcess", "ServerStartError", "find_binary", "free_port"]

START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
PORT_ATTEMPTS = 3
_PR_SET_PDEATHSIG = 1


class ServerStartError(Exception):
    """A server did not start or never got where it was waited for; the message ends with its
    log, `summary` is one line for people."""

    def __init__(self, reason: str, log: str = "") -> None:
        self.reason = reason
        self.log = log.strip()[-2000:]
        super().__init__(f"{reason}; its log ends:\n{self.log}" if self.log else reason)

    @property
    def summary(self) -> str:
        """The reason, with the log's last line (usually what went wrong)."""
        last = self.log.splitlines()[-1][:200] if self.log else ""
        return f"{self.reason}: {last}" if last else self.reason


def find_binary(*names: str) -> str | None:
    """The first of `names` on PATH (Debian and upstream name some binaries differently)."""
    return next((path for name in names if (path := shutil.which(name))), None)


def free_port() -> int:
    """A port free on 127.0.0.1 right now (someone may take it before it is bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """One server binary of the Prometheus family, which share their web and config flags.
    Subclasses give `name`, `config()` (written once, before the first launch) and `flags()`
    beyond the shared ones; `start()` returns once it is ready."""

    name: ClassVar[str] = "server"

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = 0
        self.log_path = workdir / f"{self.name}.log"
        self.config_path = workdir / f"{self.name}.yml"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def config(self) -> dict[str, object]:
        raise NotImplementedError

    def flags(self) -> list[str]:
        """Command line flags beyond the config file, the listen address and the log level."""
        return []

    def secret_file(self, name: str, value: str) -> Path:
        """A file in `workdir` only we may read, for a credential the config names."""
        path = self.workdir / name
        path.touch(mode=0o600)
        path.write_text(value)
        return path

    def args(self) -> list[str]:
        return [
            f"--config.file={self.config_path}",
            f"--web.listen-address={self.address}",
            f"--web.external-url={self.url}",
            "--log.level=warn",
            *self.flags(),
        ]

    def start(self, timeout: float = START_TIMEOUT) -> Self:
        """Launch it and wait until it answers /-/ready (well under a second)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        for _ in range(PORT_ATTEMPTS):  # another process may take the port we picked
            self.port = free_port()
            with self.log_path.open("ab") as log:
                self._proc = subprocess.Popen(
                    [self.binary, *self.args()], stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, cwd=self.workdir, preexec_fn=_die_with_parent,
                )
            try:
                self.wait(self._ready, "did not become ready", timeout)
                return self
            except ServerStartError:
                self.stop()
                if "address already in use" not in self.log():
                    raise
        raise ServerStartError(f"{self.name}: no free port after {PORT_ATTEMPTS} attempts",
                               self.log())

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Terminate it, and kill it if it lingers; nothing when it is not running."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait(self, done: Callable[[httpx.Client], bool], what: str,
             timeout: float = START_TIMEOUT) -> None:
        """Poll `done` until it is true; ServerStartError "<name> <what> in time" after
        `timeout` seconds, or at once when the process exits."""
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as http:
            while time.monotonic() < deadline:
                if self._proc is None or self._proc.poll() is not None:
                    raise ServerStartError(f"{self.name} exited", self.log())
                try:
                    if done(http):
                        return
                except (httpx.TransportError, ValueError, KeyError):
                    pass
                time.sleep(0.05)
        raise ServerStartError(f"{self.name} {what} in time", self.log())

    def _ready(self, http: httpx.Client) -> bool:
        return http.get(f"{self.url}/-/ready").status_code == 200


def _libc_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None).prctl
    except (OSError, AttributeError):
        return None
    return prctl


# Looked up once here: a forked child must not load libraries before it execs.
_PRCTL = _libc_prctl()


def _die_with_parent() -> None:
    """In the child before exec: Linux ends it when the demo dies, even by SIGKILL, so no
    server is left behind (the demo starts them from its main thread, which lives as long)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
