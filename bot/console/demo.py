"""`opsbot demo`: the whole product on embedded defaults, with no Slack and no cluster.

A simulated cluster seeded with the demo world, a SQLite store in a temp dir, the console.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from bot.config import load_settings
from bot.services import Services
from bot.simcluster import SimCluster

__all__ = ["demo_config_path", "demo_world"]


def demo_config_path() -> Path:
    return Path(str(resources.files("bot.examples").joinpath("demo.yaml")))


@contextmanager
def demo_world() -> Iterator[Services]:
    workdir = Path(tempfile.mkdtemp(prefix="opsbot-demo-"))
    sim = SimCluster(seed="demo").start(host="127.0.0.1", port=0)
    services: Services | None = None
    try:
        kubeconfig = sim.write_kubeconfig(str(workdir / "kubeconfig"))
        settings = load_settings(
            demo_config_path(),
            environ={
                "KUBECONFIG": str(kubeconfig),
                "OPSBOT_DATABASE_URL": f"sqlite:///{workdir / 'opsbot.db'}",
            },
        )
        services = Services.build(settings)
        yield services
    finally:
        if services is not None:
            services.close()
        sim.stop()
        shutil.rmtree(workdir, ignore_errors=True)
