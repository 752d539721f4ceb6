"""`opsbot demo`: the whole product on embedded defaults, with no Slack and no cluster.

A simulated cluster seeded with the demo world, a SQLite store in a temp dir, the console, and,
when the `prometheus` binary is installed, a real Prometheus scraping the simulated apps'
traffic, so deploys are verified (and a bad release rolled back) as they are in production.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from bot.config import load_settings
from bot.console.prometheus_process import PrometheusProcess, PrometheusStartError, find_binary
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
    workdir = Path(tempfile.mkdtemp(prefix="opsbot-demo-"))
    sim = SimCluster(seed="demo").start(host="127.0.0.1", port=0)
    prometheus: PrometheusProcess | None = None
    services: Services | None = None
    try:
        kubeconfig = sim.write_kubeconfig(str(workdir / "kubeconfig"))
        environ = {
            "KUBECONFIG": str(kubeconfig),
            "OPSBOT_DATABASE_URL": f"sqlite:///{workdir / 'opsbot.db'}",
        }
        prometheus = _start_prometheus(sim, workdir / "prometheus", notice)
        if prometheus is not None:
            environ["PROMETHEUS_URL"] = prometheus.url
        settings = load_settings(demo_config_path(), environ=environ)
        services = Services.build(settings)
        yield services
    finally:
        if services is not None:
            services.close()
        if prometheus is not None:
            prometheus.stop()
        sim.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _start_prometheus(sim: SimCluster, workdir: Path, notice: Callable[[str], None]
                      ) -> PrometheusProcess | None:
    """Prometheus scraping the simulated cluster, or None (said in one line) without one."""
    binary = find_binary()
    if binary is None:
        notice(NO_PROMETHEUS)
        return None
    target = sim.url.removeprefix("http://")
    process = PrometheusProcess(binary, workdir, target=target, metrics_path=METRICS_PATH,
                                bearer_token=sim.token)
    try:
        process.start()
    except (PrometheusStartError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        notice(f"Prometheus did not start ({first}): deploys are not verified")
        return None
    notice(f"Prometheus at {process.url} scrapes the simulated apps: deploys are verified")
    return process
