"""Each environment reaches its own cluster: `kube_context` picks the kubeconfig context, and
a command for one environment never touches another's cluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from bot.config import Settings
from simcluster import SimCluster
from tests.handlers.conftest import Run, deployment


@pytest.fixture
def prod_cluster() -> Iterator[SimCluster]:
    cluster = SimCluster(seed="demo").start(host="127.0.0.1", port=0)
    yield cluster
    cluster.stop()


@pytest.fixture
def settings(settings: Settings, sim: SimCluster, prod_cluster: SimCluster,
             tmp_path: Path) -> Settings:
    """staging on context `stage` (the `sim` cluster), prod on `live` (its own cluster); prod
    without approval here, so one test can change both."""
    merged: dict[str, list[object]] = {"clusters": [], "users": [], "contexts": []}
    for cluster, context in ((sim, "stage"), (prod_cluster, "live")):
        written = cluster.write_kubeconfig(tmp_path / context, context)
        one = yaml.safe_load(Path(written).read_text())
        for key in merged:
            merged[key] += one[key]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config",
                                          "current-context": "stage", **merged}))
    contexts = {"staging": "stage", "prod": "live"}
    environments = {
        name: env.model_copy(update={"kube_context": contexts[name], "requires_approval": False})
        for name, env in settings.environments.items()
    }
    return settings.model_copy(update={"kubeconfig": str(kubeconfig),
                                       "environments": environments})


async def test_each_environment_uses_its_own_context(
    run: Run, sim: SimCluster, prod_cluster: SimCluster
) -> None:
    outcome, _ = await run("scale shop-web 4")
    assert outcome.status == "succeeded"
    outcome, _ = await run("scale shop-web 5 --env prod")
    assert outcome.status == "succeeded"
    assert deployment(sim, "shop-staging", "shop-web")["spec"]["replicas"] == 4
    assert deployment(sim, "shop-prod", "shop-web")["spec"]["replicas"] == 2
    assert deployment(prod_cluster, "shop-prod", "shop-web")["spec"]["replicas"] == 5
    assert deployment(prod_cluster, "shop-staging", "shop-web")["spec"]["replicas"] == 2
