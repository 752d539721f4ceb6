"""The heartbeat row goes when a process stops, even with a beat still running in its thread
(cancelling the heartbeat task does not stop that beat)."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from pathlib import Path

from bot.config import load_settings
from bot.services import Services
from bot.store import Store, sqlite_url
from tests.support.databases import DEMO_CONFIG


class GatedBeats(Store):
    """A store whose beats wait at a gate once it is closed, and which records the order in
    which beats and the removal reach the database."""

    gate: threading.Event
    waiting: threading.Event
    order: list[str]

    def beat(self) -> None:
        if not self.gate.is_set():
            self.waiting.set()
            self.gate.wait(30)
        super().beat()
        self.order.append("beat")

    def forget_replica(self) -> None:
        super().forget_replica()
        self.order.append("forget")


def test_stopping_with_a_beat_in_its_thread_still_removes_the_heartbeat_row(
        tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "opsbot.db")
    store = GatedBeats.open(url, replica="pod-a")
    assert isinstance(store, GatedBeats)
    store.gate, store.waiting, store.order = threading.Event(), threading.Event(), []
    store.gate.set()
    settings = load_settings(DEMO_CONFIG, environ={
        "OPSBOT_DATABASE_URL": url, "OPSBOT_LEADER_ELECTION": "true",
        "OPSBOT_HEARTBEAT_SECONDS": "0.05"})
    services = Services.build(settings, store=store)

    async def scenario() -> None:
        await services.start()
        store.gate.clear()  # the next beat waits in its thread
        assert await asyncio.to_thread(store.waiting.wait, 10)
        stopping = asyncio.ensure_future(services.stop())
        await asyncio.sleep(0.3)
        assert "forget" not in store.order  # queued behind the beat, not run beside it
        store.gate.set()
        await stopping

    try:
        asyncio.run(scenario())
        assert store.order[-2:] == ["beat", "forget"]
        assert store.live_replicas(timedelta(minutes=5)) == set()
    finally:
        services.close()
