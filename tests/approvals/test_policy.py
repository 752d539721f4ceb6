"""Which changes need approval: the policy's runbook list, alert-triggered auto-approval, and
where requests may be made."""

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
from tests.approvals.test_approvals import Board, replicas
from tests.conftest import DEMO_CONFIG, RecordingReporter

AUTO_SCALE = """
name: autoscale
description: Scale up on an alert.
mutating: true
auto_approved_in: [prod]
parameters:
  app: {type: app}
  replicas: {type: replicas}
command: {verb: autoscale, args: [app, replicas]}
steps:
  - name: Scale
    handler: k8s.scale
    with: {replicas: "{{ params.replicas }}"}
"""


@pytest.fixture
def svc(tmp_path: Path, kubeconfig: Path, db_url: str) -> Iterator[Services]:
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["environments"]["prod"]["approval"]["runbooks"] = ["deploy", "rollback", "scale",
                                                          "autoscale"]
    raw["environments"]["prod"]["approval"]["channels"] = ["C0PRODOPS"]
    raw["roles"]["deployer"]["runbooks"].append("autoscale")
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbooks" / "autoscale.yaml").write_text(AUTO_SCALE)
    raw["runbook_dirs"] = [str(tmp_path / "runbooks")]
    config = tmp_path / "opsbot.yaml"
    config.write_text(yaml.safe_dump(raw))
    settings = load_settings(config, environ={"KUBECONFIG": str(kubeconfig),
                                              "OPSBOT_DATABASE_URL": db_url})
    services = Services.build(settings, registry=Registry.builtin(), board=Board())
    yield services
    services.close()


async def dispatch(svc: Services, text: str, *, source: str = "console",
                   channel: str | None = None) -> Any:
    rep = RecordingReporter()
    trigger = Trigger(source=source, actor="U0ALICE", text=text, channel=channel)  # type: ignore[arg-type]
    return await svc.dispatcher.dispatch(trigger, rep), rep


async def test_runbooks_outside_the_policy_list_run_directly(svc: Services, sim: Any) -> None:
    outcome, _ = await dispatch(svc, "restart shop-web --env prod")
    assert outcome.status == "succeeded"


async def test_listed_runbook_needs_approval(svc: Services, sim: Any) -> None:
    outcome, _ = await dispatch(svc, "scale shop-api 5 --env prod")
    assert outcome.status == "pending_approval"
    assert replicas(sim) == 3


async def test_alert_triggered_auto_approved_runbook_runs(svc: Services, sim: Any) -> None:
    outcome, _ = await dispatch(svc, "autoscale shop-api 5 --env prod", source="alert")
    assert outcome.status == "succeeded"
    sim.wait_idle()
    assert replicas(sim) == 5


async def test_same_runbook_from_a_person_needs_approval(svc: Services, sim: Any) -> None:
    outcome, _ = await dispatch(svc, "autoscale shop-api 5 --env prod")
    assert outcome.status == "pending_approval"


async def test_alert_triggered_runbook_without_auto_approval_requests(svc: Services) -> None:
    outcome, _ = await dispatch(svc, "scale shop-api 5 --env prod", source="alert")
    assert outcome.status == "pending_approval"


async def test_requests_only_from_allowed_channels(svc: Services, sim: Any) -> None:
    outcome, rep = await dispatch(svc, "scale shop-api 5 --env prod", source="slack",
                                  channel="C0RANDOM")
    assert outcome.status == "denied"
    assert "only accepted in #C0PRODOPS" in rep.notices[0].text
    outcome, _ = await dispatch(svc, "scale shop-api 5 --env prod", source="slack",
                                channel="C0PRODOPS")
    assert outcome.status == "pending_approval"
