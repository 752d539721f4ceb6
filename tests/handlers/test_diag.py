from __future__ import annotations

from typing import Any

from bot.services import Services
from tests.handlers.conftest import Run


async def test_diag_crashlooping_worker_verdict(run: Run) -> None:
    outcome, rep = await run("diag shop-worker")
    assert outcome.status == "succeeded"
    step = rep.final.steps[0]
    assert step.summary.startswith("shop-worker: OOMKilled 7 times in 30 min; memory limit 256Mi")
    assert step.output is not None
    assert "PREVIOUS LOG" in step.output
    assert "out of memory" in step.output.splitlines()[-1]
    assert "BackOff" in step.output
    assert dict(step.fields)["Restarts"] == "7"


async def test_diag_healthy_app(run: Run) -> None:
    _, rep = await run("diag shop-api")
    assert rep.final.steps[0].summary == "shop-api: healthy, 3/3 pods ready, no warning events"


async def test_diag_image_pull_error(run: Run, sim: Any, services: Services) -> None:
    sim.script_image_pull_error("api:9.9.9")
    # Someone else points the template at an image that cannot be pulled, as a bad deploy would.
    apps = services.kube.for_context(None).apps
    body = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": "api", "image": "registry.example.com/shop/api:9.9.9"}]
                }
            }
        }
    }
    apps.patch_namespaced_deployment("shop-api", "shop-staging", body)
    sim.wait_idle()
    outcome, rep = await run("diag shop-api")
    assert outcome.status == "succeeded"
    summary = rep.final.steps[0].summary
    assert summary.startswith(
        "shop-api: image registry.example.com/shop/api:9.9.9 cannot be pulled"
    )


async def test_diag_long_output_is_separate_from_summary(run: Run) -> None:
    _, rep = await run("diag shop-worker")
    step = rep.final.steps[0]
    assert "\n" not in step.summary and len(step.summary) < 200
