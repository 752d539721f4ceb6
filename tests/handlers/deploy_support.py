"""A demo-world configuration tuned for fast deploy tests (short timeouts, no Prometheus)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from bot.config import load_settings
from bot.registry import Registry
from bot.services import Services
from bot.trigger import Trigger
from tests.conftest import DEMO_CONFIG, RecordingReporter


@contextmanager
def deploy_services(
    tmp_path: Path, kubeconfig: Path, db_url: str, **overrides: Any
) -> Iterator[Services]:
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    for app in raw["apps"].values():
        app["deploy"] = {"timeout_seconds": overrides.get("timeout_seconds", 20)}
        if "analysis" in overrides:
            app["analysis"] = overrides["analysis"]
    for env in raw["environments"].values():
        env["deploy"] = {"prechecks": {"no_critical_alerts": "alertmanager_url" in overrides}}
    config = tmp_path / "deploy.yaml"
    config.write_text(yaml.safe_dump(raw))
    environ = {"KUBECONFIG": str(kubeconfig), "OPSBOT_DATABASE_URL": db_url}
    for key in ("prometheus_url", "alertmanager_url"):
        if key in overrides:
            environ[key.upper()] = overrides[key]
    settings = load_settings(config, environ=environ)
    services = Services.build(settings, registry=Registry.builtin())
    try:
        yield services
    finally:
        services.close()


async def dispatch(services: Services, text: str, user: str = "alice") -> RecordingReporter:
    rep = RecordingReporter()
    trigger = Trigger(source="console", actor=services.settings.user_id(user), text=text)
    rep.outcome = await services.dispatcher.dispatch(trigger, rep)  # type: ignore[attr-defined]
    return rep
