"""The public face of ``bot.store``: exported names, immutable records, id format."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import threading
import time
from collections.abc import Callable
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
