"""Fixtures for the Slack scenarios: the real server, the simulated cluster, the Slack stand-in.

Every test gets a fresh demo cluster, SQLite store and opsbot server; the Slack stand-in is
shared and reset. Requests are signed as Slack signs them and sent over a real socket.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bot.config import Settings, load_settings
from bot.services import Services
from bot.slack.app import build_services
from bot.slack.server import create_app
from simcluster import SimCluster
from tests.store.conftest import pg_schemas  # noqa: F401 - PostgreSQL schemas, for both backends
from tests.support.databases import database_url  # noqa: F401 - SQLite, then PostgreSQL
from tests.support.signing import SIGNING_SECRET
from tests.support.slack_standin import (
    BOT_TOKEN,
    ServerThread,
    SlackDriver,
    SlackStandIn,
)

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"


@pytest.fixture(scope="session")
def standin() -> Iterator[SlackStandIn]:
    server = SlackStandIn().start()
    yield server
    server.stop()


@pytest.fixture
def slack(standin: SlackStandIn) -> SlackStandIn:
    """The stand-in, emptied, with Slack's answer for the sre-approvers group."""
    standin.reset()
    standin.usergroups["S0APPROVERS"] = ["U0BOB", "U0CAROL"]
    return standin


@pytest.fixture
def sim() -> Iterator[SimCluster]:
    cluster = SimCluster(seed="demo").start(host="127.0.0.1", port=0)
    yield cluster
    cluster.stop()


def slack_environ(sim: SimCluster, slack: SlackStandIn, tmp_path: Path) -> dict[str, str]:
    """What a Slack scenario's opsbot is configured with: the simulated cluster, a SQLite
    store in `tmp_path`, the stand-in's Web API and the tokens it knows."""
    return {
        "KUBECONFIG": sim.write_kubeconfig(str(tmp_path / "kubeconfig")),
        "OPSBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'opsbot.db'}",
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url,
    }


@pytest.fixture
def settings(sim: SimCluster, slack: SlackStandIn, tmp_path: Path) -> Settings:
    return load_settings(DEMO_CONFIG, environ=slack_environ(sim, slack, tmp_path))


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    built = build_services(settings)
    yield built
    built.close()


@pytest.fixture
def server(services: Services) -> Iterator[ServerThread]:
    """opsbot's real ASGI app under uvicorn on 127.0.0.1, lifespan (recovery) included."""
    running = ServerThread(create_app(services, shutdown_grace=10)).start()
    yield running
    running.stop()


@pytest.fixture
def bot(server: ServerThread, slack: SlackStandIn) -> Iterator[SlackDriver]:
    with httpx.Client(timeout=30.0) as http:
        yield SlackDriver(server.url, http, slack, SIGNING_SECRET)
