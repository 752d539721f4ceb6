"""`opsbot demo`: the whole product on embedded defaults, with no Slack and no cluster.

A simulated cluster seeded with the demo world, a SQLite store in a temp dir, the console, and,
when the `prometheus` binary is installed, a real Prometheus scraping the simulated apps'
traffic, so deploys are verified (and a bad release rolled back) as they are in production.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from importlib import resources
from pathlib import Path

from bot.config import load_settings
from bot.console.prometheus_process import (
    PrometheusProcess,
    PrometheusStartError,
    find_binary,
    free_port,
)
from bot.services import Services
from bot.simcluster import SimCluster

__all__ = ["demo_config_path", "demo_world"]

METRICS_PATH = "/_sim/metrics"
NO_PROMETHEUS = (
    "Prometheus is not installed: deploys are not verified "
    "(apt-get install prometheus to see verification)"
)


def demo_config_path() -> Path:
    return Path(str(resources.files("bot.examples").joinpath("demo.yaml")))


@contextmanager
def demo_world(notice: Callable[[str], None] = print) -> Iterator[Services]:
    """The demo's services; `notice` gets one line on whether deploys are verified."""
    with ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="opsbot-demo-"))
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        # Prometheus goes first: it scrapes its first target only ~5 s after it starts, and
        # seeding the world takes some of that time.
        token, port = secrets.token_urlsafe(24), free_port()
        prometheus = _start_prometheus(f"127.0.0.1:{port}", token, workdir, notice)
        sim = SimCluster(seed="demo", token=token)
        stack.callback(sim.stop)
        try:
            sim.start(host="127.0.0.1", port=port)
        except OSError:  # the port was taken while the world was seeded
            sim.start(host="127.0.0.1", port=0)
            if prometheus is not None:
                prometheus.stop()
                target = sim.url.removeprefix("http://")
                prometheus = _start_prometheus(target, token, workdir, notice)
        if prometheus is not None:
            stack.callback(prometheus.stop)
        environ = {
            "KUBECONFIG": sim.write_kubeconfig(str(workdir / "kubeconfig")),
            "OPSBOT_DATABASE_URL": f"sqlite:///{workdir / 'opsbot.db'}",
        }
        if prometheus is not None and _scraping(prometheus, notice):
            environ["PROMETHEUS_URL"] = prometheus.url
        services = Services.build(load_settings(demo_config_path(), environ=environ))
        stack.callback(services.close)
        yield services


def _start_prometheus(target: str, token: str, workdir: Path, notice: Callable[[str], None]
                      ) -> PrometheusProcess | None:
    """Prometheus scraping the simulated cluster at `target`, or None (said in one line)."""
    binary = find_binary()
    if binary is None:
        notice(NO_PROMETHEUS)
        return None
    process = PrometheusProcess(binary, workdir / "prometheus", target=target,
                                metrics_path=METRICS_PATH, bearer_token=token)
    try:
        return process.start()
    except (PrometheusStartError, OSError) as exc:
        _not_verified(notice, exc)
        return None


def _scraping(prometheus: PrometheusProcess, notice: Callable[[str], None]) -> bool:
    try:
        prometheus.wait_for_samples()
    except PrometheusStartError as exc:
        prometheus.stop()
        _not_verified(notice, exc)
        return False
    notice(f"Prometheus at {prometheus.url} scrapes the simulated apps: deploys are verified")
    return True


def _not_verified(notice: Callable[[str], None], exc: Exception) -> None:
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    notice(f"Prometheus did not start ({first}): deploys are not verified")
