from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from kubernetes import client

from bot.dispatcher import Outcome
from bot.services import Services
from tests.conftest import RecordingReporter, dispatch

Run = Callable[..., Awaitable[tuple[Outcome, RecordingReporter]]]


@pytest.fixture
def run(services: Services) -> Run:
    """Dispatch one console command as a user; returns the outcome and what was reported."""

    async def _run(text: str, user: str = "alice") -> tuple[Outcome, RecordingReporter]:
        return await dispatch(services, text, user)

    return _run


@pytest.fixture
def custom(services: Services) -> client.CustomObjectsApi:
    """Custom resources (Rollouts, Velero objects) through the real client."""
    api: client.CustomObjectsApi = services.kube.for_context(None).custom
    return api


def deployment(sim: Any, ns: str, name: str) -> dict[str, Any]:
    obj = sim.get(f"/apis/apps/v1/namespaces/{ns}/deployments/{name}")
    assert obj is not None
    return obj  # type: ignore[no-any-return]
