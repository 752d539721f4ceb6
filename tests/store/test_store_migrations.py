"""Migrations: packaged, idempotent, safe to run concurrently, and in step with the models."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

import bot.store
from bot.store import AuditEntry, Store, sqlite_url
from bot.store import migrate as store_migrate
from bot.store.db import make_engine
from bot.store.models import GENESIS_HASH, Base
from bot.store.outbox import Outgoing, execution_key

HEAD = "0011"
ALERT_TABLES = {
    "alert_groups",
    "alert_notifications",
    "alert_runs",
    "alert_states",
    "automation_breakers",
    "automation_pauses",
}
OUTBOX_TABLES = {"outbox", "outbox_messages"}
REPLICA_TABLES = {"replicas"}
TABLES = ALERT_TABLES | OUTBOX_TABLES | REPLICA_TABLES | {
    "alembic_version",
    "approval_decisions",
    "approval_requests",
    "audit_head",
    "audit_records",
    "delivery_claims",
    "execution_steps",
    "executions",
    "target_locks",
}
TABLES_0001 = TABLES - ALERT_TABLES - OUTBOX_TABLES - REPLICA_TABLES - {
    "target_locks", "approval_decisions", "approval_requests"}


def test_migrations_ship_inside_the_package() -> None:
    config = store_migrate.alembic_config()
    location = Path(config.get_main_option("script_location") or "")
    package = Path(bot.store.__file__).parent
    assert location == package / "migrations"
    assert (location / "env.py").is_file() and (location / "script.py.mako").is_file()
    assert config.config_file_name is None  # no alembic.ini is read
    assert store_migrate.head_revision() == HEAD == store_migrate.HEAD


def test_a_database_at_head_opens_without_importing_alembic(tmp_path: Path) -> None:
    """Alembic is for migrating: a process whose database is new or current never loads it
    (the footprint), and one whose database is behind migrates as before."""
    url = sqlite_url(str(tmp_path / "opsbot.db"))
    probe = ("import sys\nfrom bot.store import Store\n"
             f"Store.open({url!r}).close()\n"
             "print(any(m == 'alembic' or m.startswith('alembic.') for m in sys.modules))")

    def alembic_loaded() -> bool:
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                              check=True, timeout=120)
        return done.stdout.strip() == "True"

    assert not alembic_loaded()  # a new database: made at head from the models
    assert not alembic_loaded()  # at head: Alembic never imported
    engine = make_engine(url)
    store_migrate.downgrade(engine, "0007")
    engine.dispose()
    assert alembic_loaded()  # behind: migrated again
    engine = make_engine(url)
    assert store_migrate.current_revision(engine) == HEAD
    engine.dispose()


def test_upgrade_on_an_empty_database_is_idempotent(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # nothing may depend on the working directory
    engine = make_engine(db_url)
    try:
        assert store_migrate.current_revision(engine) is None
        store_migrate.upgrade(engine)
        store_migrate.upgrade(engine)
        assert store_migrate.current_revision(engine) == HEAD
        assert set(inspect(engine).get_table_names()) >= TABLES
        with engine.connect() as conn:
            head = conn.execute(text("SELECT id, seq, hash FROM audit_head")).all()
        assert [tuple(row) for row in head] == [(1, 0, GENESIS_HASH)]
        Store.open(db_url).close()
        assert store_migrate.current_revision(engine) == HEAD
    finally:
        engine.dispose()


def test_concurrent_first_opens_migrate_once(db_url: str) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def open_and_close() -> None:
        try:
            barrier.wait()
            Store.open(db_url).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_and_close) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_downgrade_to_base_and_up_again(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        store_migrate.upgrade(engine)
        store_migrate.downgrade(engine, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        store_migrate.upgrade(engine)
        assert store_migrate.current_revision(engine) == HEAD
    finally:
        engine.dispose()


def test_downgrade_locks_and_up_again(db_url: str) -> None:
    """0002 (and 0003) undone leave 0001's schema and data; redone, models match again."""
    store = Store.open(db_url)
    store.acquire_lock("prod/db", execution_id="ex-A", actor="alice", ttl_seconds=60)
    store.audit(AuditEntry("alice", "console", "restart db", "prod", "db", "succeeded"))
    store.close()
    engine = make_engine(db_url)
    try:
        store_migrate.downgrade(engine, "0001")
        assert store_migrate.current_revision(engine) == "0001"
        tables = set(inspect(engine).get_table_names())
        assert not tables & (TABLES - TABLES_0001)
        assert tables >= TABLES_0001
        indexes = {ix["name"] for ix in inspect(engine).get_indexes("audit_records")}
        assert indexes == {"ix_audit_records_execution_id", "ix_audit_records_time"}

        store_migrate.upgrade(engine)
        assert store_migrate.current_revision(engine) == HEAD
        _assert_models_match(engine)
    finally:
        engine.dispose()
    with Store.open(db_url) as store:
        assert store.get_lock("prod/db") is None  # the table was recreated empty
        assert [r["command"] for r in store.audit_records()] == ["restart db"]
        assert store.verify_audit() == []


def test_downgrade_approvals_and_up_again(db_url: str) -> None:
    """0003 undone drops only the approval tables; redone, they are back, empty."""
    store = Store.open(db_url)
    request = store.create_request(
        runbook="scale",
        command="scale shop-api 5 --env prod",
        environment="prod",
        target="shop-api",
        params={"replicas": 5},
        reason=None,
        requester="U0ALICE",
        source="slack",
        channel=None,
        plan_text="scale shop-api 3 -> 5",
        plan_digest="d" * 64,
        required=1,
        eligible_users=[],
        eligible_groups=["sre-approvers"],
        allow_self=False,
        ttl_seconds=600,
    )
    store.approve(request.id, "U0BOB")
    store.acquire_lock("prod/db", execution_id="ex-A", actor="alice", ttl_seconds=60)
    store.close()
    engine = make_engine(db_url)
    try:
        store_migrate.downgrade(engine, "0002")
        assert store_migrate.current_revision(engine) == "0002"
        tables = set(inspect(engine).get_table_names())
        assert tables == TABLES - ALERT_TABLES - OUTBOX_TABLES - REPLICA_TABLES - {
            "approval_decisions", "approval_requests"}

        store_migrate.upgrade(engine)
        assert store_migrate.current_revision(engine) == HEAD
        _assert_models_match(engine)
        indexes = {ix["name"] for ix in inspect(engine).get_indexes("approval_requests")}
        assert "ix_approval_requests_status_expires_at" in indexes
        uniques = inspect(engine).get_unique_constraints("approval_decisions")
        assert "uq_approval_decisions_request_id_actor_kind" in {uq["name"] for uq in uniques}
    finally:
        engine.dispose()
    with Store.open(db_url) as store:
        assert store.get_request(request.id) is None  # recreated empty
        assert store.pending_requests() == []
        lock = store.get_lock("prod/db")  # 0002's data untouched
        assert lock is not None and lock.execution_id == "ex-A"


def test_downgrade_request_context_keeps_requests(db_url: str) -> None:
    """0005 undone drops only the context column: requests and their decisions stay."""
    store = Store.open(db_url)
    request = store.create_request(
        runbook="test-restart", command="run test-restart app=shop-api --env prod",
        environment="prod", target="shop-api", params={"app": "shop-api"}, reason=None,
        requester="alertmanager", source="alert", channel=None, plan_text="restart",
        plan_digest="e" * 64, required=2, eligible_users=[], eligible_groups=["sre"],
        allow_self=False, ttl_seconds=600, context={"alert": {"name": "TestStuck"}},
    )
    store.approve(request.id, "U0BOB")
    assert store.get_request(request.id).context == {"alert": {"name": "TestStuck"}}  # type: ignore[union-attr]
    store.close()
    engine = make_engine(db_url)
    try:
        store_migrate.downgrade(engine, "0004")
        columns = {c["name"] for c in inspect(engine).get_columns("approval_requests")}
        assert "context" not in columns
        with engine.connect() as conn:
            decisions = conn.execute(text("SELECT actor FROM approval_decisions")).all()
        assert [tuple(row) for row in decisions] == [("U0BOB",)]
        store_migrate.upgrade(engine)
        _assert_models_match(engine)
    finally:
        engine.dispose()
    with Store.open(db_url) as store:
        kept = store.get_request(request.id)
        assert kept is not None and kept.context == {} and len(kept.approvals) == 1


def test_downgrade_outbox_and_up_again(db_url: str) -> None:
    """0006 undone drops only the outbox tables; redone, they are back, empty, and the
    executions and their message addresses stayed."""
    store = Store.open(db_url)
    ex_id = store.create_execution(
        runbook="scale", source="slack", actor="U0ALICE", command="scale shop-api 4",
        environment="staging", target="shop-api", params={}, dry_run=False, channel="C0OPS")
    store.set_execution_message(ex_id, channel="C0OPS", ts="1700000000.000001")
    store.enqueue(Outgoing("show", {"channel": "C0OPS", "text": "done"},
                           key=execution_key(ex_id)))
    store.close()
    engine = make_engine(db_url)
    try:
        store_migrate.downgrade(engine, "0005")
        assert store_migrate.current_revision(engine) == "0005"
        assert set(inspect(engine).get_table_names()) == TABLES - OUTBOX_TABLES - REPLICA_TABLES
        store_migrate.upgrade(engine)
        _assert_models_match(engine)
        indexes = {ix["name"] for ix in inspect(engine).get_indexes("outbox")}
        assert {"ix_outbox_stream_id", "ix_outbox_status_not_before"} <= indexes
    finally:
        engine.dispose()
    with Store.open(db_url) as store:
        assert store.outbox_stats().waiting == 0  # recreated empty
        record = store.get_execution(ex_id)
        assert record is not None and record.ts == "1700000000.000001"


def test_notification_payload_text_down_and_up_keeps_notifications(db_url: str) -> None:
    """0011 keeps a notification's payload as `json` on PostgreSQL (it was `jsonb`) and drops
    the unread `group_hash` index; undone and redone, the stored notifications read the same
    (the processor reads them after an upgrade, from a queue left by the older release)."""
    payload = {"version": "4", "groupKey": "{}:{alertname=\"X\"}", "status": "firing",
               "alerts": [{"labels": {"alertname": "X", "note": "é ✓"}, "n": [1, 2.5, None]}]}
    store = Store.open(db_url)
    nid = store.record_notification(group_key=payload["groupKey"], receiver="opsbot",
                                    status="firing", payload=payload)
    store.close()
    engine = make_engine(db_url)

    def payload_type() -> str:
        column = next(c for c in inspect(engine).get_columns("alert_notifications")
                      if c["name"] == "payload")
        return type(column["type"]).__name__.upper()

    def indexed() -> set[str]:
        return {ix["name"] for ix in inspect(engine).get_indexes("alert_notifications")}

    postgres = engine.dialect.name == "postgresql"
    try:
        assert "ix_alert_notifications_group_hash" not in indexed()
        if postgres:
            assert payload_type() == "JSON"
        store_migrate.downgrade(engine, "0010")
        assert "ix_alert_notifications_group_hash" in indexed()
        if postgres:
            assert payload_type() == "JSONB"
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM alert_notifications")).scalar() == 1
        store_migrate.upgrade(engine)
        _assert_models_match(engine)
        assert "ix_alert_notifications_group_hash" not in indexed()
    finally:
        engine.dispose()
    with Store.open(db_url) as store:
        kept = store.get_notification(nid)
        assert kept is not None and kept.payload == payload


def _assert_models_match(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_object": store_migrate.include_object}
        )
        assert compare_metadata(context, Base.metadata) == []


def test_models_match_migrations(db_url: str) -> None:
    """What `alembic revision --autogenerate` would find: nothing."""
    engine = make_engine(db_url)
    try:
        store_migrate.upgrade(engine, from_models=False)
        _assert_models_match(engine)
    finally:
        engine.dispose()


def _schema(engine: Engine) -> dict[str, Any]:
    """Everything the database says of each table: columns (type, nullability, default),
    primary key, indexes, unique, foreign key and check constraints, each with its name."""
    found = inspect(engine)
    schema: dict[str, Any] = {}
    for table in sorted(found.get_table_names()):
        schema[table] = {
            "columns": [(c["name"], str(c["type"]), c["nullable"], c.get("default"))
                        for c in found.get_columns(table)],
            "primary key": found.get_pk_constraint(table),
            "indexes": sorted((ix["name"] or "", tuple(ix["column_names"]), ix["unique"])
                              for ix in found.get_indexes(table)),
            "unique": sorted((u["name"] or "", tuple(u["column_names"]))
                             for u in found.get_unique_constraints(table)),
            "foreign keys": sorted(
                (fk["name"] or "", tuple(fk["constrained_columns"]), fk["referred_table"],
                 tuple(fk["referred_columns"]), tuple(sorted(fk.get("options", {}).items())))
                for fk in found.get_foreign_keys(table)),
            "checks": sorted((ck["name"] or "", " ".join(ck["sqltext"].split()))
                             for ck in found.get_check_constraints(table)),
        }
    return schema


def test_a_new_database_made_from_the_models_is_the_one_the_migrations_make(
    db_url: str, request: pytest.FixtureRequest, tmp_path: Path,
) -> None:
    """A first start creates the schema from the models (no Alembic, no ten migrations):
    table by table, constraint by constraint, what the migrations would have made, with the
    audit chain's head row, at Alembic's head, and later migrations apply to it as to any."""
    if db_url.startswith("sqlite"):
        migrated_url = sqlite_url(tmp_path / "migrated" / "opsbot.db")
    else:
        migrated_url = request.getfixturevalue("pg_schemas").new_url()
    made, migrated = make_engine(db_url), make_engine(migrated_url)
    try:
        store_migrate.upgrade(made)
        store_migrate.upgrade(migrated, from_models=False)
        assert _schema(made) == _schema(migrated)
        for engine in (made, migrated):
            assert store_migrate.current_revision(engine) == HEAD
            with engine.connect() as conn:
                head = conn.execute(text("SELECT id, seq, hash FROM audit_head")).all()
                assert [tuple(row) for row in head] == [(1, 0, GENESIS_HASH)]
        with made.connect() as a, migrated.connect() as b:
            # The head row's time is stored alike (the audit chain reads it back).
            when = "SELECT updated_at FROM audit_head"
            assert type(a.execute(text(when)).scalar()) is type(b.execute(text(when)).scalar())
        store_migrate.downgrade(made, "0007")
        store_migrate.upgrade(made)
        assert _schema(made) == _schema(migrated)
    finally:
        made.dispose()
        migrated.dispose()


def test_sqlite_settings(tmp_path: Path) -> None:
    store = Store.open(sqlite_url(tmp_path / "new" / "dir" / "opsbot.db"), busy_timeout_ms=1234)
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 1234
    finally:
        store.close()
    assert (tmp_path / "new" / "dir" / "opsbot.db").is_file()


def test_in_memory_sqlite_works_across_threads() -> None:
    import asyncio

    store = Store.open("sqlite://")
    try:
        ex_id = asyncio.run(
            asyncio.to_thread(
                store.create_execution,
                runbook="r",
                source="console",
                actor="alice",
                command="status shop-api",
                environment=None,
                target=None,
                params={},
                dry_run=False,
            )
        )
        assert store.get_execution(ex_id) is not None
    finally:
        store.close()
