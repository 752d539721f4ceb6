"""Either database under a test: a SQLite file, or a fresh schema on the real PostgreSQL
(the `pg_schemas` fixture of tests/store/conftest.py, which the using conftest imports), for
answers that must not depend on which one opsbot runs on; and the server on a given one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from bot.config import load_settings
from bot.services import Services
from bot.slack.app import build_services
from bot.slack.server import create_app
from simcluster import SimCluster
from tests.store.conftest import PostgresSchemas
from tests.support.signing import SIGNING_SECRET
from tests.support.slack_standin import BOT_TOKEN, ServerThread, SlackDriver, SlackStandIn

__all__ = ["database_url", "demo_server"]

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'opsbot.db'}"
    schemas: PostgresSchemas = request.getfixturevalue("pg_schemas")
    return schemas.new_url()


@contextmanager
def demo_server(sim: SimCluster, slack: SlackStandIn, tmp_path: Path, database_url: str,
                **environ: str) -> Iterator[tuple[SlackDriver, Services]]:
    """The real server on the demo world and `database_url`, driven as Slack drives it."""
    settings = load_settings(DEMO_CONFIG, environ={
        "KUBECONFIG": sim.write_kubeconfig(str(tmp_path / "kubeconfig")),
        "OPSBOT_DATABASE_URL": database_url,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url,
        **environ,
    })
    services = build_services(settings)
    server = ServerThread(create_app(services, shutdown_grace=5)).start()
    try:
        with httpx.Client(timeout=60.0) as http:
            yield SlackDriver(server.url, http, slack, SIGNING_SECRET), services
    finally:
        server.stop()
        services.close()
