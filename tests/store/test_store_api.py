"""The public face of ``bot.store``: exported names, immutable records, id format."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

import bot.store
from bot.store import (
    ApprovalOutcome,
    ApprovalRequest,
    AuditEntry,
    AuditProblem,
    Decision,
    ExecutionRecord,
    LockInfo,
    StepRecord,
    Store,
    StoreError,
    StoreUnavailable,
    ids,
    sqlite_url,
)
from bot.store.alerts import AlertRunRecord, DecisionAsked, GroupUpdate, Guardrails, group_hash
from bot.store.ids import _encode, new_id


def test_exported_names() -> None:
    assert sorted(bot.store.__all__) == [
        "ApprovalOutcome",
        "ApprovalRequest",
        "AuditChainBroken",
        "AuditEntry",
        "AuditProblem",
        "BadDatabaseURL",
        "DatabaseUnreachable",
        "Decision",
        "ExecutionRecord",
        "InvalidTransition",
        "LockInfo",
        "NotFound",
        "SilenceRecord",
        "StepRecord",
        "Store",
        "StoreError",
        "StoreUnavailable",
        "TargetHeld",
        "committed",
        "sqlite_url",
    ]
    assert issubclass(bot.store.NotFound, LookupError)


def test_records_are_frozen() -> None:
    for cls in (
        ApprovalOutcome,
        ApprovalRequest,
        AuditEntry,
        AuditProblem,
        Decision,
        ExecutionRecord,
        LockInfo,
        StepRecord,
    ):
        assert dataclasses.is_dataclass(cls)
        assert cls.__dataclass_params__.frozen  # type: ignore[union-attr]
    entry = AuditEntry("alice", "console", "status shop-api", None, "shop-api", "succeeded")
    assert entry.details == {} and entry.execution_id is None and entry.request_id is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.actor = "mallory"  # type: ignore[misc]
    assert str(AuditProblem(3, "missing", "Record 3 is missing.")) == "Record 3 is missing."


def test_ids_are_short_sortable_and_unique() -> None:
    ids = [new_id("ex") for _ in range(2000)]
    assert all(re.fullmatch(r"ex-[0-9A-HJKMNP-TV-Z]{26}", i) for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert re.fullmatch(r"rq-[0-9A-HJKMNP-TV-Z]{26}", new_id("rq"))


def test_an_id_carries_its_millisecond_as_ulid_does() -> None:
    # ULID: the first 10 characters are the time in ms, Crockford base32, most significant
    # first; decoding them gives the time the id was made.
    before = time.time_ns() // 1_000_000
    made = new_id("an").removeprefix("an-")
    after = time.time_ns() // 1_000_000
    digits = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    stamp = 0
    for char in made[:10]:
        stamp = stamp * 32 + digits.index(char)
    assert before <= stamp <= after
    assert _encode(0, 10) == "0" * 10 and _encode((1 << 48) - 1, 10) == "7" + "Z" * 9
    assert _encode(1 << 75, 16) == "1" + "0" * 15 and _encode(31, 16) == "0" * 15 + "Z"


def test_ids_unique_across_threads() -> None:
    found: list[str] = []
    lock = threading.Lock()

    def make() -> None:
        batch = [new_id("ex") for _ in range(500)]
        with lock:
            found.extend(batch)

    threads = [threading.Thread(target=make) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(found)) == 4000


def test_the_random_part_of_ids_is_never_handed_out_twice() -> None:
    """The OS's random bytes are fetched in bulk: across refills of the pool, and in a forked
    child (which must not hand out its parent's remaining bytes again), no draw repeats."""
    with ids._lock:
        draws = [ids._random80() for _ in range(ids._POOL_BYTES // 10 * 3 + 7)]
    assert len(set(draws)) == len(draws) and all(0 <= d < 1 << 79 for d in draws)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next draws, then out at once
        try:
            with ids._lock:
                os.write(write, json.dumps([ids._random80() for _ in range(5)]).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = json.loads(pipe.read())
    os.waitpid(pid, 0)
    with ids._lock:
        parent = [ids._random80() for _ in range(5)]
    assert len(child) == 5 and not set(child) & set(parent)


def test_database_errors_become_store_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable):
        Store.open("postgresql+psycopg://postgres@127.0.0.1:1/test?connect_timeout=2")
    with pytest.raises(StoreError, match="the database URL is not valid"):
        Store.open("not a url")
    store = Store.open(sqlite_url(tmp_path / "opsbot.db"))
    try:
        with pytest.raises(StoreError):
            store.create_execution(
                runbook="r",
                source="console",
                actor="alice",
                command="run r",
                environment=None,
                target=None,
                params={"unserializable": object()},
                dry_run=False,
            )
        assert store.recent_executions() == []  # the failed write left nothing behind
    finally:
        store.close()


def test_a_notifications_alert_states_are_claimed_together(
        open_store: Callable[..., Store]) -> None:
    store, other = open_store(), open_store()  # two replicas on one database
    long_key = "fp|firing|" + "x" * 400  # stored hashed, answered as given
    first = ["a|firing|t0", "b|firing|t0", long_key, "a|firing|t0"]
    assert store.claim_alert_states(first, "an-1") == {"a|firing|t0", "b|firing|t0", long_key}
    # Another notification (a repeat, on another replica) owns only what is new to it.
    assert other.claim_alert_states(["a|firing|t0", long_key, "c|resolved|t0"], "an-2") \
        == {"c|resolved|t0"}
    # The first, processed again after a restart, still owns all of its own.
    assert store.claim_alert_states(first, "an-1") == {"a|firing|t0", "b|firing|t0", long_key}
    assert store.claim_alert_states([], "an-3") == set()


def test_a_batch_of_notifications_claims_its_alert_states_in_one_call(
        open_store: Callable[..., Store]) -> None:
    store = open_store()
    claims = [("an-1", ["a|firing|t0", "b|firing|t0"]), ("an-2", ["b|firing|t0", "c|firing|t0"]),
              ("an-3", ["a|firing|t0"]), ("an-4", [])]
    # The first of the batch to carry a state owns it; processed again, each owns the same.
    expected = {"an-1": {"a|firing|t0", "b|firing|t0"}, "an-2": {"c|firing|t0"},
                "an-3": set(), "an-4": set()}
    assert store.claim_alert_states_for(claims) == expected
    assert store.claim_alert_states_for(claims[::-1]) == expected
    assert store.claim_alert_states(["c|firing|t0"], "an-9") == set()


def test_a_batch_of_group_updates_merges_in_order(open_store: Callable[..., Store]) -> None:
    store = open_store()
    key = '{}:{alertname="Batch"}'
    updates = [
        GroupUpdate(key, "opsbot", {"f1": {"status": "firing", "notified_at": "t1"},
                                    "f2": {"status": "firing", "notified_at": "t1"}}),
        GroupUpdate('{}:{alertname="Other"}', "opsbot",
                    {"f9": {"status": "resolved", "notified_at": "t1"}}),
        GroupUpdate(key, "opsbot", {"f1": {"status": "resolved", "notified_at": "t2"}}),
        GroupUpdate(key, "opsbot", {"f2": {"status": "resolved", "notified_at": "t0"}}),  # older
    ]
    groups = store.update_alert_groups(updates)
    assert set(groups) == {group_hash(key), group_hash('{}:{alertname="Other"}')}
    batch = groups[group_hash(key)]
    assert {f: a["status"] for f, a in batch.alerts.items()} == {"f1": "resolved",
                                                                 "f2": "firing"}
    assert batch.status == "firing" and groups[group_hash('{}:{alertname="Other"}')].status \
        == "resolved"
    [(read, runs)] = store.alert_groups_with_runs([group_hash(key), "no-such-group"]).values()
    assert read == batch and runs == []


def test_decisions_taken_together_count_each_other_and_are_audited_with_them(
        open_store: Callable[..., Store]) -> None:
    store = open_store()
    limits = Guardrails(cooldown=timedelta(minutes=10), max_runs=3, window=timedelta(hours=1),
                        max_concurrent=5, shadow=False)

    def audit(run: AlertRunRecord) -> AuditEntry:
        return AuditEntry(actor="alertmanager", source="alert", command=f"X -> {run.runbook}",
                          environment=run.environment, target=run.target,
                          outcome=f"automation_{run.decision}", details={"run": run.id})

    asked = [DecisionAsked(state_key=f"f{i}|firing|t0", group_key='{}:{alertname="X"}',
                           fingerprint=f"f{i}", alertname="X", runbook="restart",
                           environment="staging", target="shop-api", mutating=True,
                           guardrails=limits, audit=audit) for i in range(3)]
    first, second, third = store.decide_alert_runs(asked)
    assert [r.decision for r in (first, second, third)] == ["run", "cooldown", "cooldown"]
    assert all(r.created for r in (first, second, third))
    # Taken again (a notification processed twice): found as they were, audited once.
    again = store.decide_alert_runs(asked)
    assert [(r.id, r.created) for r in again] == [(r.id, False) for r in (first, second, third)]
    audited = [r for r in store.audit_records(limit=20) if r["outcome"].startswith("automation")]
    assert sorted(r["details"]["run"] for r in audited) == sorted(
        r.id for r in (first, second, third))
    assert store.verify_audit() == []


def test_replicas_claiming_the_same_alert_states_at_once_each_own_them_once(
        open_store: Callable[..., Store]) -> None:
    # Repeats of one group's alerts, processed on two replicas at the same moment, in
    # different orders: every state has one owner, and no claim fails (no deadlock).
    stores = [open_store(), open_store()]
    owned: list[list[set[str]]] = [[], []]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def claim(side: int) -> None:
        try:
            start.wait(10)
            for round_ in range(15):
                keys = [f"fp{i}|firing|r{round_}" for i in range(40)]
                if side:
                    keys.reverse()
                owned[side].append(stores[side].claim_alert_states(keys, f"an-{side}-{round_}"))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=claim, args=(side,)) for side in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    for round_ in range(15):
        mine, theirs = owned[0][round_], owned[1][round_]
        assert not mine & theirs
        assert mine | theirs == {f"fp{i}|firing|r{round_}" for i in range(40)}
