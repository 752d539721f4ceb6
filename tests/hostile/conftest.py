"""Hypothesis settings for the hostile-input suite.

The profile is derandomized: every run tries the same examples, so a failure seen once is seen
again (in CI and on a laptop alike) and no example database is written. Example counts are set
per test and kept small enough for the whole folder to run in about a minute on two cores; no
deadline, since a loaded machine is slow, not wrong. `OPSBOT_HYPOTHESIS_PROFILE=explore` runs
random examples, ten times as many, to look for new failures by hand.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest
from hypothesis import HealthCheck

from bot.services import Services
from bot.slack.app import build_services
from bot.slack.server import create_app
from simcluster import SimCluster
from tests.alerts.conftest import alert_settings_for

# The real server on the demo world with the Slack stand-in (tests/slack), on either database.
from tests.slack.conftest import (  # noqa: F401 - fixtures
    bot,
    server,
    services,
    settings,
    sim,
    slack,
    standin,
)
from tests.store.conftest import pg_schemas  # noqa: F401 - PostgreSQL schemas, for both backends
from tests.support.databases import database_url  # noqa: F401 - SQLite, then PostgreSQL
from tests.support.signing import SIGNING_SECRET
from tests.support.slack_standin import BOT_TOKEN, ServerThread, SlackStandIn

_QUIET = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
          HealthCheck.data_too_large, HealthCheck.filter_too_much]

hypothesis.settings.register_profile(
    "opsbot", derandomize=True, database=None, deadline=None, suppress_health_check=_QUIET,
    print_blob=True)
hypothesis.settings.register_profile(
    "explore", derandomize=False, database=None, deadline=None, suppress_health_check=_QUIET,
    max_examples=1000)
hypothesis.settings.load_profile(os.environ.get("OPSBOT_HYPOTHESIS_PROFILE", "opsbot"))


def examples(count: int) -> hypothesis.settings:
    """`count` examples in the usual profile, ten times as many when exploring."""
    if hypothesis.settings.default.max_examples >= 1000:
        return hypothesis.settings(max_examples=count * 10)
    return hypothesis.settings(max_examples=count)


@pytest.fixture
def intake(sim: SimCluster, tmp_path: Path, slack: SlackStandIn,  # noqa: F811 - fixtures
           ) -> Iterator[tuple[ServerThread, Services]]:
    """The real server with both doors open: `/slack/events` and `/alertmanager` (its token
    is `tests.alerts.conftest.TOKEN`)."""
    configured = alert_settings_for(sim, tmp_path, environ={
        "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url})
    built = build_services(configured)
    running = ServerThread(create_app(built, shutdown_grace=10)).start()
    yield running, built
    running.stop()
    built.close()
