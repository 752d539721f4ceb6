"""Audit log: append, export, and verify catching each kind of tampering."""

from __future__ import annotations

import hashlib
import itertools
import json
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from bot.store import AuditChainBroken, AuditEntry, Store
from bot.store import audit as audit_module

from .conftest import FakeClock


def _entry(n: int, **overrides: object) -> AuditEntry:
    fields: dict[str, object] = {
        "actor": "U0ALICE",
        "source": "slack",
        "command": f"scale shop-api {n}",
        "environment": "staging",
        "target": "shop-api",
        "outcome": "succeeded",
        "execution_id": f"ex-{n}",
        "request_id": None,
        "details": {"replicas": n},
    }
    fields.update(overrides)
    return AuditEntry(**fields)  # type: ignore[arg-type]


def _fill(store: Store, count: int) -> None:
    for n in range(1, count + 1):
        assert store.audit(_entry(n)) == n


def _sql(store: Store, *statements: str) -> None:
    with store.engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)


def _kinds(store: Store) -> list[tuple[int | None, str]]:
    return [(p.seq, p.kind) for p in store.verify_audit()]


def test_empty_log_is_intact(store: Store) -> None:
    assert store.verify_audit() == []
    assert list(store.export_audit()) == []


def test_append_and_export(clocked_store: Store) -> None:
    store = clocked_store
    _fill(store, 3)
    store.audit(_entry(4, request_id="req-9", outcome="awaiting-approval", details={}))
    assert store.verify_audit() == []
    records = list(store.export_audit())
    assert [r["seq"] for r in records] == [1, 2, 3, 4]
    last = records[-1]
    assert last["time"] == "2025-03-01T12:00:00.004000Z"
    assert (last["actor"], last["source"], last["command"]) == (
        "U0ALICE",
        "slack",
        "scale shop-api 4",
    )
    assert (last["environment"], last["target"], last["outcome"]) == (
        "staging",
        "shop-api",
        "awaiting-approval",
    )
    assert (last["execution_id"], last["request_id"], last["details"]) == ("ex-4", "req-9", {})
    assert records[0]["prev_hash"] == "0" * 64
    for before, after in itertools.pairwise(records):
        assert after["prev_hash"] == before["hash"]


def test_hash_follows_the_documented_formula(store: Store) -> None:
    """Pins the format, so records can be checked by tools other than opsbot."""
    store.audit(_entry(1, details={"b": [1, 2], "a": "é"}))
    (record,) = store.export_audit()
    hashed = {k: record[k] for k in record if k not in ("prev_hash", "hash")}
    document = json.dumps(hashed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    expected = hashlib.sha256(("0" * 64 + document).encode("utf-8")).hexdigest()
    assert record["hash"] == expected


def test_details_that_are_not_json_are_stored_as_text(store: Store) -> None:
    when = datetime(2025, 1, 2, tzinfo=UTC)
    store.audit(_entry(1, details={"when": when, "tags": ("a", "b")}))
    (record,) = store.export_audit()
    assert record["details"] == {"when": str(when), "tags": ["a", "b"]}
    assert store.verify_audit() == []


def test_detects_an_edited_field(store: Store) -> None:
    _fill(store, 4)
    _sql(store, "UPDATE audit_records SET outcome = 'refused' WHERE seq = 2")
    problems = store.verify_audit()
    assert [(p.seq, p.kind) for p in problems] == [(2, "edited")]
    assert "Record 2 was edited" in problems[0].message


def test_detects_edited_details_and_time(store: Store) -> None:
    _fill(store, 3)
    _sql(
        store,
        "UPDATE audit_records SET details = '{\"replicas\":99}' WHERE seq = 1",
        "UPDATE audit_records SET details = 'not json' WHERE seq = 2",
        "UPDATE audit_records SET time = time - INTERVAL '1 hour' WHERE seq = 3"
        if store.engine.dialect.name == "postgresql"
        else "UPDATE audit_records SET time = '2001-01-01 00:00:00.000000' WHERE seq = 3",
    )
    assert _kinds(store) == [(1, "edited"), (2, "edited"), (3, "edited")]


def test_detects_a_deleted_record(store: Store) -> None:
    _fill(store, 5)
    _sql(store, "DELETE FROM audit_records WHERE seq = 3")
    problems = store.verify_audit()
    assert [(p.seq, p.kind) for p in problems] == [(3, "missing")]
    assert problems[0].message == "Record 3 is missing: the sequence jumps from 2 to 4."


def test_detects_a_record_inserted_in_the_middle(store: Store) -> None:
    """A forger renumbers later records to make room and links the new one correctly."""
    _fill(store, 4)
    prev_hash = next(r["hash"] for r in store.export_audit() if r["seq"] == 2)
    _sql(
        store,
        "UPDATE audit_records SET seq = seq + 100 WHERE seq > 2",
        "UPDATE audit_records SET seq = seq - 99 WHERE seq > 100",
        "INSERT INTO audit_records (seq, time, actor, source, command, environment, target,"
        " outcome, execution_id, request_id, details, prev_hash, hash) VALUES (3,"
        " '2025-01-01 00:00:00', 'mallory', 'slack', 'approve 1', 'prod', 'shop-api',"
        f" 'succeeded', NULL, NULL, '{{}}', '{prev_hash}', '{'f' * 64}')",
        "UPDATE audit_head SET seq = 5",
    )
    kinds = _kinds(store)
    assert (3, "edited") in kinds  # the forged hash
    assert (4, "edited") in kinds  # renumbered: seq is part of the hash
    assert (4, "inserted") in kinds  # no longer linked to its new predecessor


def test_detects_a_record_appended_without_the_head(store: Store) -> None:
    _fill(store, 2)
    last = list(store.export_audit())[-1]
    _sql(
        store,
        "INSERT INTO audit_records (seq, time, actor, source, command, environment, target,"
        " outcome, execution_id, request_id, details, prev_hash, hash) VALUES (3,"
        " '2025-01-01 00:00:00', 'mallory', 'slack', 'deploy', 'prod', 'shop-api',"
        f" 'succeeded', NULL, NULL, '{{}}', '{last['hash']}', '{'0' * 64}')",
    )
    assert _kinds(store) == [(3, "edited"), (3, "inserted")]


def test_detects_tail_truncation(store: Store) -> None:
    _fill(store, 5)
    _sql(store, "DELETE FROM audit_records WHERE seq >= 4")
    problems = store.verify_audit()
    assert [(p.seq, p.kind) for p in problems] == [(4, "truncated")]
    assert "ends at record 3 but the head says 5" in problems[0].message


def test_detects_a_replaced_last_record(store: Store) -> None:
    _fill(store, 2)
    _sql(store, f"UPDATE audit_records SET hash = '{'a' * 64}' WHERE seq = 2")
    assert _kinds(store) == [(2, "edited"), (2, "head")]


def test_missing_head_is_reported_and_stops_appends(store: Store) -> None:
    _fill(store, 2)
    _sql(store, "DELETE FROM audit_head")
    assert _kinds(store) == [(None, "head")]
    with pytest.raises(AuditChainBroken):
        store.audit(_entry(3))


def test_export_since(clocked_store: Store, clock: FakeClock) -> None:
    store = clocked_store
    _fill(store, 2)
    clock.advance(timedelta(hours=1))
    cutoff = clock.now
    store.audit(_entry(3))
    store.audit(_entry(4))
    assert [r["seq"] for r in store.export_audit(since=cutoff)] == [3, 4]
    naive = cutoff.replace(tzinfo=None)  # naive input is taken as UTC
    assert [r["seq"] for r in store.export_audit(since=naive)] == [3, 4]
    assert list(store.export_audit(since=clock.now + timedelta(days=1))) == []


def test_export_pages_through_many_records(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_module, "_EXPORT_BATCH", 3)
    _fill(store, 7)
    exported = store.export_audit()
    assert [r["seq"] for r in exported] == list(range(1, 8))
    assert [r["seq"] for r in store.export_audit(since=datetime(2000, 1, 1, tzinfo=UTC))] == [
        1,
        2,
        3,
        4,
        5,
        6,
        7,
    ]


def test_concurrent_appends_from_threads_keep_the_chain(open_store: Callable[..., Store]) -> None:
    replicas = [open_store() for _ in range(3)]
    workers, each = 9, 8
    barrier = threading.Barrier(workers)

    def append(n: int) -> list[int]:
        barrier.wait()
        return [replicas[n % 3].audit(_entry(n * 100 + i)) for i in range(each)]

    with ThreadPoolExecutor(workers) as pool:
        seqs = sorted(s for batch in pool.map(append, range(workers)) for s in batch)
    assert seqs == list(range(1, workers * each + 1))
    assert replicas[0].verify_audit() == []


_WORKER = """
import sys
from bot.store import AuditEntry, Store
store = Store.open(sys.argv[1])
for i in range(int(sys.argv[2])):
    store.audit(AuditEntry("U0BOB", "scheduler", f"backup {i}", "prod", "db", "succeeded"))
store.close()
"""


def test_concurrent_appends_from_processes_keep_the_chain(
    open_store: Callable[..., Store], db_url: str
) -> None:
    store = open_store()
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, db_url, "15"]) for _ in range(3)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    assert [r["seq"] for r in store.export_audit()] == list(range(1, 46))
    assert store.verify_audit() == []
