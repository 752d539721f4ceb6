"""Shared fixtures: every test gets a fresh registry, store and (when asked) simulated cluster."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings, load_settings
from bot.dispatcher import Outcome
from bot.markup import plain
from bot.registry import Registry
from bot.reporting import ExecutionView, Notice
from bot.services import Services
from bot.trigger import Trigger

ROOT = Path(__file__).resolve().parent.parent
DEMO_CONFIG = ROOT / "examples" / "demo.yaml"
REQUIRE_REAL = os.environ.get("OPSBOT_REQUIRE_REAL") == "1"


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """A test that runs the CLI in this process (`bot.cli.main`) configures logging as the
    command would (root at ERROR, a stderr handler); later tests must still see every record."""
    import logging

    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        yield
    finally:
        root.setLevel(level)
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)


@pytest.fixture
def registry() -> Registry:
    return Registry.builtin()


@pytest.fixture
def sim() -> Iterator[Any]:
    from simcluster import SimCluster

    cluster = SimCluster(seed="demo").start(host="127.0.0.1", port=0)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def argocd_server() -> Iterator[Any]:
    """The Argo CD API stand-in, one per test module; tests reset it and add their apps."""
    from tests.support.argocd_standin import ArgoCDStandIn

    standin = ArgoCDStandIn().start()
    try:
        yield standin
    finally:
        standin.stop()


@pytest.fixture
def kubeconfig(sim: Any, tmp_path: Path) -> Path:
    return Path(sim.write_kubeconfig(str(tmp_path / "kubeconfig")))


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'opsbot.db'}"


@pytest.fixture
def settings(kubeconfig: Path, db_url: str) -> Settings:
    return load_settings(
        DEMO_CONFIG, environ={"KUBECONFIG": str(kubeconfig), "OPSBOT_DATABASE_URL": db_url}
    )


@pytest.fixture
def offline_settings(db_url: str) -> Settings:
    """The demo configuration without a cluster, for tests that never reach Kubernetes."""
    return load_settings(DEMO_CONFIG, environ={"OPSBOT_DATABASE_URL": db_url})


@pytest.fixture
def offline(offline_settings: Settings) -> Iterator[Services]:
    """The product's services on the demo configuration, without a cluster."""
    built = Services.build(offline_settings)
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def services(settings: Settings, registry: Registry) -> Iterator[Services]:
    built = Services.build(settings, registry=registry)
    try:
        yield built
    finally:
        built.close()


class RecordingReporter:
    """A Reporter that keeps every view snapshot and notice, for assertions; their texts as
    the console shows them (`bot.markup.plain`: our markup dropped, values as they came)."""

    def __init__(self) -> None:
        self.views: list[ExecutionView] = []
        self.notices: list[Notice] = []

    async def execution(self, view: ExecutionView) -> None:
        shown = copy.deepcopy(view)
        shown.summary = plain(shown.summary)
        for step in shown.steps:
            step.summary = plain(step.summary)
            step.progress = plain(step.progress) if step.progress else step.progress
            step.fields = tuple((plain(k), plain(v)) for k, v in step.fields)
        self.views.append(shown)

    async def notice(self, notice: Notice) -> None:
        self.notices.append(replace(
            notice, text=plain(notice.text), hint=plain(notice.hint) if notice.hint else None,
            details=tuple(plain(line) for line in notice.details)))

    @property
    def final(self) -> ExecutionView:
        assert self.views, "no execution was reported"
        return self.views[-1]


@pytest.fixture
def reporter() -> RecordingReporter:
    return RecordingReporter()


async def dispatch(services: Services, text: str, user: str = "alice"
                   ) -> tuple[Outcome, RecordingReporter]:
    """One console command typed by `user`: its outcome and everything reported."""
    reporter = RecordingReporter()
    trigger = Trigger(source="console", actor=services.settings.user_id(user), text=text)
    return await services.dispatcher.dispatch(trigger, reporter), reporter
