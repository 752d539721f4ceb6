"""Handlers work on StatefulSets too: status, scale (scale subresource) and restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.config import load_settings
from bot.registry import Registry
from bot.services import Services
from bot.trigger import Trigger
from tests.conftest import DEMO_CONFIG, RecordingReporter

STATEFULSET = {
    "apiVersion": "apps/v1",
    "kind": "StatefulSet",
    "metadata": {"name": "shop-db", "namespace": "shop-staging", "labels": {"app": "shop-db"}},
    "spec": {
        "replicas": 2,
        "serviceName": "shop-db",
        "selector": {"matchLabels": {"app": "shop-db"}},
        "template": {
            "metadata": {"labels": {"app": "shop-db"}},
            "spec": {"containers": [{"name": "db", "image": "postgres:16.4"}]},
        },
    },
}


@pytest.fixture
def sts_services(sim: Any, kubeconfig: Path, db_url: str, tmp_path: Path) -> Iterator[Services]:
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["apps"]["shop-db"] = {"kind": "StatefulSet", "container": "db",
                              "replicas": {"min": 1, "max": 3}, "environments": ["staging"]}
    config = tmp_path / "opsbot.yaml"
    config.write_text(yaml.safe_dump(raw))
    settings = load_settings(config, environ={"KUBECONFIG": str(kubeconfig),
                                              "OPSBOT_DATABASE_URL": db_url})
    services = Services.build(settings, registry=Registry.builtin())
    services.kube.for_context(None).apps.create_namespaced_stateful_set("shop-staging", STATEFULSET)
    sim.wait_idle()
    yield services
    services.close()


async def _run(services: Services, text: str) -> RecordingReporter:
    rep = RecordingReporter()
    await services.dispatcher.dispatch(Trigger(source="console", actor="U0ALICE", text=text), rep)
    return rep


async def test_statefulset_status(sts_services: Services) -> None:
    rep = await _run(sts_services, "status shop-db")
    fields = dict(rep.final.steps[0].fields)
    assert fields["Workload"] == "StatefulSet shop-staging/shop-db"
    assert fields["Image (db)"] == "postgres:16.4"
    assert rep.final.steps[0].summary.startswith("shop-db: 2/2 ready")


async def test_statefulset_scale(sts_services: Services, sim: Any) -> None:
    rep = await _run(sts_services, "scale shop-db 3")
    assert rep.final.status == "succeeded", rep.final.summary
    sts = sim.get("/apis/apps/v1/namespaces/shop-staging/statefulsets/shop-db")
    assert sts["spec"]["replicas"] == 3


async def test_statefulset_restart(sts_services: Services, sim: Any) -> None:
    rep = await _run(sts_services, "restart shop-db")
    assert rep.final.status == "succeeded", rep.final.summary
    sts = sim.get("/apis/apps/v1/namespaces/shop-staging/statefulsets/shop-db")
    assert "kubectl.kubernetes.io/restartedAt" in sts["spec"]["template"]["metadata"]["annotations"]


async def test_statefulset_diag(sts_services: Services) -> None:
    rep = await _run(sts_services, "diag shop-db")
    assert rep.final.steps[0].summary == "shop-db: healthy, 2/2 pods ready, no warning events"
