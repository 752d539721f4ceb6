"""Executions: lifecycle, listing, and interruption at startup, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, timedelta
from typing import Any

import pytest

from bot.store import InvalidTransition, NotFound, Store

from .conftest import FakeClock


def _create(store: Store, **overrides: Any) -> str:
    fields: dict[str, Any] = {
        "runbook": "deploy",
        "source": "slack",
        "actor": "U0ALICE",
        "command": "deploy shop-api 1.5.0 --env staging",
        "environment": "staging",
        "target": "shop-api",
        "params": {"app": "shop-api", "tag": "1.5.0"},
        "dry_run": False,
    }
    fields.update(overrides)
    return store.create_execution(**fields)


def test_lifecycle_is_recorded(clocked_store: Store) -> None:
    store = clocked_store
    ex_id = _create(store, request_id="req-1", channel="C0OPS")
    assert ex_id.startswith("ex-") and len(ex_id) == 29

    store.set_execution_message(ex_id, channel="C0OPS", ts="1700000000.000100")
    store.start_step(ex_id, index=0, name="check", handler="k8s.get_deployment")
    store.finish_step(ex_id, index=0, status="succeeded", summary="found", output="3/3 ready")
    store.start_step(ex_id, index=1, name="roll", handler="k8s.set_image")
    running = store.get_execution(ex_id)
    assert running is not None and running.running and running.finished_at is None
    assert [s.status for s in running.steps] == ["succeeded", "running"]

    store.finish_step(ex_id, index=1, status="failed", summary="timeout", error="not ready")
    store.finish_execution(ex_id, status="failed", summary="rollout timed out")

    record = store.get_execution(ex_id)
    assert record is not None
    assert (record.runbook, record.source, record.actor) == ("deploy", "slack", "U0ALICE")
    assert (record.environment, record.target) == ("staging", "shop-api")
    assert record.params == {"app": "shop-api", "tag": "1.5.0"}
    assert record.dry_run is False and record.request_id == "req-1"
    assert (record.channel, record.ts) == ("C0OPS", "1700000000.000100")
    assert (record.status, record.summary) == ("failed", "rollout timed out")
    assert record.started_at.tzinfo is UTC and record.finished_at is not None
    assert record.started_at < record.finished_at
    first, second = record.steps
    assert (first.index, first.name, first.handler, first.output) == (
        0,
        "check",
        "k8s.get_deployment",
        "3/3 ready",
    )
    assert (second.status, second.summary, second.error) == ("failed", "timeout", "not ready")
    assert second.finished_at is not None and second.started_at <= second.finished_at


def test_params_round_trip_as_json(store: Store) -> None:
    params = {"replicas": 3, "ratio": 0.5, "flags": [True, None], "nested": {"ü": "ok"}}
    ex_id = _create(store, params=params, dry_run=True, environment=None, target=None)
    record = store.get_execution(ex_id)
    assert record is not None
    assert record.params == params and record.dry_run is True
    assert record.environment is None and record.target is None


def test_unknown_execution(store: Store) -> None:
    assert store.get_execution("ex-NOPE") is None
    with pytest.raises(NotFound):
        store.set_execution_message("ex-NOPE", channel="C", ts="1")
    with pytest.raises(NotFound):
        store.start_step("ex-NOPE", index=0, name="a", handler="h")
    with pytest.raises(NotFound):
        store.finish_execution("ex-NOPE", status="succeeded", summary="")


def test_an_execution_ends_once(store: Store) -> None:
    ex_id = _create(store)
    with pytest.raises(ValueError, match="status must be one of"):
        store.finish_execution(ex_id, status="done", summary="")
    store.finish_execution(ex_id, status="succeeded", summary="ok")
    with pytest.raises(InvalidTransition, match="already succeeded"):
        store.finish_execution(ex_id, status="failed", summary="late")
    with pytest.raises(InvalidTransition):
        store.start_step(ex_id, index=0, name="a", handler="h")
    record = store.get_execution(ex_id)
    assert record is not None and (record.status, record.summary) == ("succeeded", "ok")


def test_step_rules(store: Store) -> None:
    ex_id = _create(store)
    with pytest.raises(NotFound):
        store.finish_step(ex_id, index=0, status="succeeded", summary="")
    store.start_step(ex_id, index=0, name="a", handler="h")
    with pytest.raises(InvalidTransition):
        store.start_step(ex_id, index=0, name="a", handler="h")
    with pytest.raises(ValueError):
        store.finish_step(ex_id, index=0, status="running", summary="")
    store.finish_step(ex_id, index=0, status="succeeded", summary="")
    with pytest.raises(InvalidTransition):
        store.finish_step(ex_id, index=0, status="failed", summary="")


def test_recent_executions_newest_first_with_filters(clocked_store: Store) -> None:
    store = clocked_store
    ids = [
        _create(store, environment="staging", target="shop-api"),
        _create(store, environment="prod", target="shop-api"),
        _create(store, environment="staging", target="shop-web"),
        _create(store, environment="staging", target="shop-api"),
    ]
    assert [r.id for r in store.recent_executions()] == ids[::-1]
    assert [r.id for r in store.recent_executions(2)] == [ids[3], ids[2]]
    assert [r.id for r in store.recent_executions(environment="staging")] == [
        ids[3],
        ids[2],
        ids[0],
    ]
    assert [r.id for r in store.recent_executions(target="shop-api")] == [ids[3], ids[1], ids[0]]
    assert [r.id for r in store.recent_executions(environment="staging", target="shop-api")] == [
        ids[3],
        ids[0],
    ]
    assert store.recent_executions(environment="dev") == []


def test_interrupt_running_marks_and_returns_only_running(
    open_store: Callable[..., Store], clock: FakeClock
) -> None:
    store = open_store(clock=clock)
    done = _create(store)
    store.finish_execution(done, status="succeeded", summary="ok")
    mid_step = _create(store)
    store.start_step(mid_step, index=0, name="first", handler="h")
    store.finish_step(mid_step, index=0, status="succeeded", summary="ok")
    store.start_step(mid_step, index=1, name="second", handler="h")
    waiting = _create(store)
    store.close()

    # A restart: a new process opens the same database.
    clock.advance(timedelta(minutes=5))
    restarted = open_store(clock=clock)
    interrupted = restarted.interrupt_running("opsbot restarted")
    assert [r.id for r in interrupted] == [mid_step, waiting]
    assert all(r.status == "interrupted" and r.summary == "opsbot restarted" for r in interrupted)
    assert all(r.finished_at is not None for r in interrupted)
    assert [s.status for s in interrupted[0].steps] == ["succeeded", "interrupted"]
    assert interrupted[0].steps[1].error == "opsbot restarted"

    assert restarted.interrupt_running("again") == []
    finished = restarted.get_execution(done)
    assert finished is not None and finished.status == "succeeded"
    # The old run must not quietly resume.
    with pytest.raises(InvalidTransition):
        restarted.finish_step(mid_step, index=1, status="succeeded", summary="late")
