"""Fixtures for alert intake and processing: the demo cluster, a store with a clock the test
moves, the services with a recording alert board, and test runbooks with alert triggers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.alerts.view import AlertGroupView
from bot.config import Settings, load_settings
from bot.reporting import ExecutionView, Notice, Reporter
from bot.services import Services
from bot.store import Store
from simcluster import SimCluster
from tests.slack.conftest import slack, standin  # noqa: F401 - the Slack stand-in fixtures
from tests.store.conftest import pg_schemas  # noqa: F401 - PostgreSQL schemas, for both backends
from tests.support.databases import database_url  # noqa: F401 - SQLite, then PostgreSQL

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"
TEST_RUNBOOKS = Path(__file__).resolve().parent / "runbooks"
TOKEN = "am-test-token-0123456789"


class Clock:
    """The store's clock; tests move it to pass cooldowns and windows."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@dataclass
class RecordingAlertBoard:
    """An AlertBoard that keeps what it was asked to show."""

    shown: list[AlertGroupView] = field(default_factory=list)
    executions: dict[str, ExecutionView] = field(default_factory=dict)
    notices: list[Notice] = field(default_factory=list)
    announcements: list[str] = field(default_factory=list)
    calls: list[int] = field(default_factory=list)  # how many views each show was given

    async def show(self, *views: AlertGroupView) -> None:
        self.shown.extend(views)
        self.calls.append(len(views))

    def reporter(self, view: AlertGroupView) -> Reporter:
        return _Recorder(self)

    async def announce(self, view: AlertGroupView, text: str) -> None:
        self.announcements.append(text)

    def last(self, group_hash: str | None = None) -> AlertGroupView:
        views = [v for v in self.shown if group_hash is None or v.group_hash == group_hash]
        return views[-1]


class _Recorder:
    def __init__(self, board: RecordingAlertBoard) -> None:
        self._board = board

    async def execution(self, view: ExecutionView) -> None:
        self._board.executions[view.execution_id] = view

    async def notice(self, notice: Notice) -> None:
        self._board.notices.append(notice)


@pytest.fixture
def alert_sim() -> Iterator[SimCluster]:
    cluster = SimCluster(seed="demo").start(host="127.0.0.1", port=0)
    yield cluster
    cluster.stop()


def alert_settings_for(sim: SimCluster, tmp_path: Path, *, environ: dict[str, str] | None = None,
                       **alerts: Any) -> Settings:
    kubeconfig = sim.write_kubeconfig(str(tmp_path / "kubeconfig"))
    settings = load_settings(DEMO_CONFIG, environ={
        "KUBECONFIG": str(kubeconfig),
        "OPSBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'opsbot.db'}",
        "OPSBOT_ALERTMANAGER_TOKEN": TOKEN,
        **(environ or {}),
    })
    return settings.model_copy(update={
        "runbook_dirs": [str(TEST_RUNBOOKS)],
        "alerts": settings.alerts.model_copy(update={"channel": "C0ALERTS", **alerts}),
    })


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def board() -> RecordingAlertBoard:
    return RecordingAlertBoard()


@pytest.fixture
def alert_settings(alert_sim: SimCluster, tmp_path: Path) -> Settings:
    return alert_settings_for(alert_sim, tmp_path)


@pytest.fixture
def alert_services(alert_settings: Settings, clock: Clock,
                   board: RecordingAlertBoard) -> Iterator[Services]:
    store = Store.open(alert_settings.database_url or "", clock=clock)
    services = Services.build(alert_settings, store=store, alert_board=board)
    yield services
    services.close()
