"""pytest fixtures for the real alert chain (exporter → Prometheus → Alertmanager → webhook).

Use them with `pytest_plugins = ["tests.support.fixtures_alert_chain"]` in a test module:

- `alert_chain`: a callable `start(url, token, rules=DEFAULT_RULES, **options) -> AlertChain`
  that starts a chain delivering to `url` with `Authorization: Bearer <token>` (`options` are
  `AlertChain`'s keyword arguments, e.g. `group_interval="5s"`); every chain started is stopped
  at teardown, after printing its logs (pytest shows them when the test failed).
- `webhook_recorder`: a started `WebhookRecorder` to point a chain at instead of the bot.

For a chain shared by a module's tests (one takes about 6s to start), build a wider-scoped
fixture on `tests.support.alert_chain.chain_starter(workdir)`, the same `start` as a context
manager; import it from there, not from this plugin module (pytest warns it cannot rewrite
asserts in a plugin imported before it is registered).

Both binaries are looked up first, so a test without them is skipped (fails with
OPSBOT_REQUIRE_REAL=1), as with `tests/support/fixtures_prometheus.py`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.alert_chain import StartChain, chain_starter
from tests.support.webhook_recorder import WebhookRecorder

__all__ = ["alert_chain", "webhook_recorder"]


@pytest.fixture
def alert_chain(tmp_path: Path) -> Iterator[StartChain]:
    with chain_starter(tmp_path) as start:
        yield start


@pytest.fixture
def webhook_recorder() -> Iterator[WebhookRecorder]:
    with WebhookRecorder() as recorder:
        yield recorder
