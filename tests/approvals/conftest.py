"""Fixtures for the approval flow: a settable clock, a board that records what it showed and
told, and the services built on both."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.config import Settings
from bot.registry import Registry
from bot.services import Services
from bot.store import Store
from tests.conftest import RecordingReporter


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


class Board:
    """Records what the approval board showed and told."""

    def __init__(self) -> None:
        self.shown: list[Any] = []
        self.told: list[tuple[str, Any]] = []

    async def show(self, view: Any) -> None:
        self.shown.append(view)

    async def tell(self, user: str, view: Any, notice: Any) -> None:
        self.told.append((user, notice))

    def reporter(self, view: Any) -> RecordingReporter:
        self.execution = RecordingReporter()
        return self.execution


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def board() -> Board:
    return Board()


@pytest.fixture
def svc(settings: Settings, db_url: str, clock: Clock, board: Board) -> Iterator[Services]:
    store = Store.open(db_url, clock=clock)
    services = Services.build(settings, registry=Registry.builtin(), store=store, board=board)
    yield services
    services.close()
